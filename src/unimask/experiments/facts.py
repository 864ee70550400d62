"""Facts that cannot be measured on this machine, computed by unimask's calculator, each with its source.

Parameter totals are counted from the published shapes (``unimask.analysis.params``) and compared with
the published totals (``unimask.analysis.published``); GPT-3's compute, time, cost, energy and CO2 come
from ``unimask.analysis.compute`` under the setup Patterson et al. 2021 report; the composite-task
arithmetic from ``unimask.analysis.emergence``. The two published CO2 estimates that the notes' figure
is usually traced to are kept here with their sources, as published numbers (not computed).
"""

from __future__ import annotations

from typing import Any

NAMED_MODELS = ("gpt3-175b", "llama-7b", "llama-65b", "palm-540b", "chatglm-6b", "glm-130b", "t5-11b",
                "flan-t5-xxl", "bart-large")

PATTERSON = {"gpus": 10_000, "days": 14.8, "power_w": 330.0, "pue": 1.1, "grid_gco2_per_kwh": 429.0,
             "source": "Patterson et al. 2021, 'Carbon Emissions and Large Neural Network Training', Table 4 "
                       "(GPT-3: 10,000 V100 GPUs for 14.8 days, 330 W each, PUE 1.1, 429 gCO2e/kWh)"}
PUBLISHED_CO2 = {
    "patterson_gpt3_t": {"value": 552.0, "source": "Patterson et al. 2021, Table 4: GPT-3, 552 t CO2e"},
    "strubell_nas_t": {"value": 284.0,
                       "source": "Strubell et al. 2019, 'Energy and Policy Considerations for Deep Learning in NLP', "
                                 "Table 3: 626,155 lbs (284 t) CO2e for a Transformer (big) trained with neural "
                                 "architecture search; not GPT-3"},
}
GPT3_TOKENS = 300e9  # Brown et al. 2020, section 2.2
# The notes' own numbers (the claims under test), kept apart from everything computed.
NOTES_CLAIMS = {"gpt3_cost_usd": 300_000.0, "gpt3_co2_t": 284.0, "large_threshold": 1e8,
                "composite": {"k": 5, "p0": 0.4, "p1": 0.6, "c0": 0.011, "c1": 0.07},
                "source": "the classic LLM interview notes (LLM fundamentals), questions 4, 6 and 9"}


def parameter_facts() -> list[dict[str, Any]]:
    from unimask.analysis.params import count_parameters
    from unimask.analysis.published import PUBLISHED
    from unimask.config import preset

    rows = []
    for name in NAMED_MODELS:
        config = preset(name)
        total = count_parameters(config).total
        pub = PUBLISHED.get(name)
        rows.append({"model": name, "arch": config.arch, "parameters": total,
                     "published": pub.total if pub else None, "source": pub.source if pub else "",
                     "tolerance": pub.tolerance if pub else None,
                     "gap": (total - pub.total) / pub.total if pub else None})
    return rows


def gpt3_facts() -> dict[str, Any]:
    from unimask.analysis.compute import ACCELERATORS, Setup, energy_and_co2, estimate
    from unimask.config import preset

    config = preset("gpt3-175b")
    gpu_hours = PATTERSON["gpus"] * PATTERSON["days"] * 24
    v100 = ACCELERATORS["v100"]
    est = estimate(config, Setup(tokens=GPT3_TOKENS, accelerator="v100", count=PATTERSON["gpus"], mfu=0.2,
                                 pue=PATTERSON["pue"], grid_gco2_per_kwh=PATTERSON["grid_gco2_per_kwh"]),
                   name="gpt3-175b")
    a100 = estimate(config, Setup(tokens=GPT3_TOKENS, accelerator="a100", count=1024, mfu=0.4), name="gpt3-175b")
    energy = energy_and_co2(gpu_hours, PATTERSON["power_w"], PATTERSON["pue"], PATTERSON["grid_gco2_per_kwh"])
    return {
        "tokens": GPT3_TOKENS, "flops_6nd": est.flops["six_nd"], "flops_with_attention": est.flops["total"],
        "v100_hours": gpu_hours, "v100_price_per_hour": v100.price_per_hour,
        "cost_usd_v100_list_price": gpu_hours * v100.price_per_hour,
        "cost_usd_a100_40pct_mfu": a100.run["cost_usd"], "a100_price_per_hour": ACCELERATORS["a100"].price_per_hour,
        "days_at_20pct_v100_mfu": est.run["days"],
        "energy_mwh": energy["energy_kwh"] / 1000, "co2_t": energy["co2_kg"] / 1000,
        "setup_source": PATTERSON["source"],
        "price_note": "on-demand cloud list prices assumed by unimask's calculator (analysis.compute.ACCELERATORS)",
    }


def calculator_facts() -> dict[str, Any]:
    """Every calculator number the report uses, with sources."""
    from unimask.analysis.emergence import composite_example

    return {"parameters": parameter_facts(), "notes": NOTES_CLAIMS, "gpt3": gpt3_facts(),
            "published_co2": PUBLISHED_CO2, "composite": composite_example(0.4, 0.6, 5),
            "composite_source": "unimask.analysis.emergence.composite_example: p ** k for k = 5 subtasks"}


__all__ = ["NAMED_MODELS", "calculator_facts", "gpt3_facts", "parameter_facts"]
