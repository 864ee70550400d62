"""Every sentence of the report, in English and Chinese. Placeholders ``{name}`` are filled from the
results (runs or calculator facts), never typed in here: the notes' own numbers too come from
``results["facts"]["notes"]``."""

from __future__ import annotations

LANGS = ("en", "zh")
Text = dict[str, str]

UI: dict[str, Text] = {
    "title": {"en": "unimask: the three LLM families, side by side", "zh": "unimask：三大类大模型架构的对照实验"},
    "subtitle": {"en": "The questions of the classic LLM interview notes, answered with measurements",
                 "zh": "用实测数据回答经典大模型面试笔记中的问题"},
    "verdicts": {"en": "Verdicts", "zh": "结论一览"},
    "question": {"en": "Question", "zh": "问题"},
    "claim": {"en": "The notes' claim", "zh": "笔记中的说法"},
    "ran": {"en": "What was run", "zh": "做了什么"},
    "numbers": {"en": "Numbers", "zh": "数据"},
    "measured": {"en": "Measured", "zh": "测量结果"},
    "verdict": {"en": "Verdict", "zh": "结论"},
    "rule": {"en": "Rule", "zh": "判定规则"},
    "reproduce": {"en": "Reproduce", "zh": "复现命令"},
    "key": {"en": "Key number", "zh": "关键数字"},
    "figure": {"en": "Figure", "zh": "图"},
    "learned": {"en": "Did the models learn?", "zh": "模型学到东西了吗？"},
    "learned_intro": {
        "en": "A comparison says nothing unless every model learned. Held-out text loss (nats per token) against "
              "the unigram baseline {unigram}, and in-distribution task accuracy against chance {chance}:",
        "zh": "只有每个模型都学到了东西，比较才有意义。下表列出留出文本的损失（nats/token，一元模型基线为 "
              "{unigram}）和分布内任务准确率（随机水平为 {chance}）："},
    "learned_ok": {"en": "learned", "zh": "已学到"},
    "learned_no": {"en": "did NOT learn enough to answer in this format: read its comparisons with care",
                   "zh": "在这种读取格式下学得不够：与它相关的比较需谨慎看待"},
    "row": {"en": "Row", "zh": "实验行"},
    "params": {"en": "Parameters", "zh": "参数量"},
    "steps": {"en": "Steps", "zh": "步数"},
    "text_loss": {"en": "Held-out loss", "zh": "留出损失"},
    "accuracy": {"en": "In-distribution accuracy", "zh": "分布内准确率"},
    "own_loss": {"en": "Held-out loss, own objective", "zh": "自身目标的留出损失"},
    "setup": {"en": "The study", "zh": "实验设置"},
    "setup_text": {
        "en": "Study '{study}': {rows} rows (family x objective x size) x {seeds} seeds, each trained for "
              "{budget} FLOPs (counted by unimask's calculator on each row's real shapes) on one corpus "
              "({text_docs} English documents and {task_docs} task documents) with one {vocab}-token "
              "tokenizer, {precision} on {device}. Every number below is read from results.json; spreads are "
              "standard deviations across seeds.",
        "zh": "实验“{study}”：{rows} 个实验行（架构 × 训练目标 × 规模）× {seeds} 个随机种子，每次训练 {budget} "
              "FLOPs（由 unimask 的计算器按各行的真实形状计算），使用同一语料（{text_docs} 篇英文文档和 "
              "{task_docs} 篇任务文档）和同一个 {vocab} 词的分词器，{device} 上以 {precision} 训练。下文所有数字"
              "均读自 results.json，误差为各随机种子之间的标准差。"},
    "provenance": {"en": "Provenance", "zh": "数据来源"},
    "provenance_text": {
        "en": "unimask {version} (commit {commit}), results created {created} in {seconds} s on {machine} "
              "(torch {torch}, {workers} worker(s) x {threads} thread(s)). Command: {command}.",
        "zh": "unimask {version}（提交 {commit}），结果生成于 {created}，耗时 {seconds} 秒，机器：{machine}"
              "（torch {torch}，{workers} 个进程 × {threads} 个线程）。命令：{command}。"},
    "rule_general": {
        "en": "Verdict rule: a difference counts when it exceeds twice its across-seed spread "
              "(|mean_a − mean_b| > 2·sqrt(sd_a² + sd_b²)); the claim is then supported or contradicted by its "
              "sign, and inconclusive at this scale otherwise. Facts that cannot be measured here come from "
              "unimask's calculator, with their sources.",
        "zh": "判定规则：当差异超过随机种子间离散度的两倍（|mean_a − mean_b| > 2·sqrt(sd_a² + sd_b²)）时才算数，"
              "并按差异方向判为“支持”或“相反”；否则为“在此规模下无定论”。无法在本机测量的事实来自 unimask "
              "的计算器，并注明出处。"},
    "language": {"en": "中文", "zh": "English"},
    "samples": {"en": "Sample generations (greedy)", "zh": "生成样例（贪心解码）"},
}

VERDICT: dict[str, Text] = {
    "supported": {"en": "supported", "zh": "支持"},
    "contradicted": {"en": "contradicted", "zh": "相反"},
    "inconclusive": {"en": "inconclusive at this scale", "zh": "在此规模下无定论"},
    "not measured": {"en": "not measured yet", "zh": "尚未测量"},
}

QUESTIONS: dict[str, Text] = {
    "1": {"en": "What are the mainstream open-source model families?", "zh": "目前主流的开源模型体系有哪些？"},
    "2": {"en": "How do the prefix decoder, the causal decoder and the encoder-decoder differ?",
        "zh": "prefix decoder、causal decoder 和 encoder-decoder 有什么区别？"},
    "3": {"en": "What are LLMs trained to do?", "zh": "大模型的训练目标是什么？"},
    "4": {"en": "Where do emergent abilities come from?", "zh": "涌现能力是什么原因造成的？"},
    "5": {"en": "Why are most LLMs decoder-only?", "zh": "为什么现在的大模型大多是 decoder-only 结构？"},
    "6": {"en": "What is a large language model?", "zh": "什么是大模型？"},
    "7": {"en": "What do 175B, 60B, 540B after a model's name mean?",
          "zh": "大模型名字后面的 175B、60B、540B 指什么？"},
    "8": {"en": "What are the strengths of LLMs?", "zh": "大模型有什么优点？"},
    "9": {"en": "What are the weaknesses of LLMs?", "zh": "大模型有什么缺点？"},
}

CLAIMS: dict[str, Text] = {
    "families": {"en": "Open models come in three families: the causal decoder (GPT, LLaMA), the prefix decoder "
                       "(GLM, ChatGLM, U-PaLM) and the encoder-decoder (T5, Flan-T5, BART).",
                 "zh": "开源大模型分三类：causal decoder（GPT、LLaMA）、prefix decoder（GLM、ChatGLM、U-PaLM）和 "
                       "encoder-decoder（T5、Flan-T5、BART）。"},
    "masks": {"en": "They differ in the attention mask: a causal decoder sees only earlier tokens; a prefix decoder "
                    "reads its input bidirectionally and writes its output causally; an encoder-decoder reads with a "
                    "bidirectional encoder and writes with a causal decoder.",
              "zh": "三者的区别在于注意力掩码：causal decoder 只能看到前面的 token；prefix decoder 对输入双向、对输出"
                    "单向；encoder-decoder 用双向编码器读入，用单向解码器输出。"},
    "efficiency": {"en": "The causal decoder trains more efficiently than the prefix decoder, because every token "
                         "carries loss.",
                   "zh": "causal decoder 的训练效率比 prefix decoder 高，因为每个 token 都参与损失计算。"},
    "objectives": {"en": "LLMs are trained by language modelling (predict the next token) or by denoising (corrupt "
                         "spans of text and restore them, as T5 and GLM-130B do).",
                   "zh": "大模型的训练目标是语言模型（预测下一个 token）或去噪自编码（破坏文本片段再恢复，如 T5、"
                         "GLM-130B）。"},
    "loss_tokens": {"en": "A causal decoder takes the loss on every token, a prefix decoder only on the output.",
                    "zh": "causal decoder 在每个 token 上计算损失，prefix decoder 只在输出部分计算损失。"},
    "metrics": {"en": "Emergence comes from metrics that are not smooth: exact match jumps while the per-token "
                      "quality improves smoothly.",
                "zh": "涌现来自不平滑的评价指标：逐 token 的质量平滑提升，而完全匹配（exact match）却会突然跃升。"},
    "composite": {"en": "A complex task is a chain of subtasks: {k} subtasks each improving from {p0} to {p1} take the "
                        "whole task from {c0} to {c1}.",
                  "zh": "复杂任务由子任务组成：{k} 个子任务各自从 {p0} 提升到 {p1}，整个任务从 {c0} 提升到 {c1}。"},
    "zero_shot": {"en": "Decoder-only (causal) models have the best zero-shot ability without multitask fine-tuning.",
                  "zh": "在不做多任务微调时，decoder-only（因果）模型的 zero-shot 能力最好。"},
    "low_rank": {"en": "Bidirectional attention is low-rank, which weakens the model's expressiveness; causal "
                       "attention is full rank.",
                 "zh": "双向注意力存在低秩问题，会削弱模型的表达能力；因果注意力是满秩的。"},
    "twice_params": {"en": "Where encoder-decoders do better, it is only because they have twice the parameters.",
                     "zh": "encoder-decoder 在某些场景下表现更好，只是因为它多了一倍的参数。"},
    "large": {"en": "A large model has more than {threshold} parameters, and the bar keeps rising.",
              "zh": "大模型一般指参数量超过 {threshold} 的模型，而且这个标准一直在提高。"},
    "175b": {"en": "175B, 60B, 540B count parameters: B is a billion, so 175B is 175 billion parameters.",
             "zh": "175B、60B、540B 指参数的个数，B 是 billion（十亿），175B 就是 1750 亿个参数。"},
    "finetune": {"en": "Pretrain one general model on plentiful unlabelled text, then adapt it with a little labelled "
                       "data: labelling costs less and the model generalises better.",
                 "zh": "用大量无标注数据预训练一个通用模型，再用少量标注数据微调以适应具体任务，可以降低标注成本、"
                       "提高泛化能力。"},
    "cost": {"en": "Training GPT-3 cost about {usd}.", "zh": "训练一个 GPT-3 大约需要 {usd}。"},
    "co2": {"en": "Training GPT-3 emitted about {t} of CO2.", "zh": "训练一个 GPT-3 大约产生 {t} 二氧化碳排放。"},
}

RAN: dict[str, Text] = {
    "families": {"en": "unimask builds each named model's architecture from its published shapes; the calculator "
                       "counts its parameters and compares them with the published total.",
                 "zh": "unimask 按公开的形状构建每个模型的结构，由计算器统计参数量并与公开数字比较。"},
    "masks": {"en": "In every trained model the last input token was changed and the output at the first input "
                    "position compared (max |Δ logit|; the encoder output for an encoder-decoder). Zero means the "
                    "first position cannot see the last.",
              "zh": "在每个训练好的模型中改变最后一个输入 token，比较第一个输入位置的输出变化（最大 |Δ logit|；"
                    "encoder-decoder 比较编码器输出）。为零表示第一个位置看不到最后一个位置。"},
    "efficiency": {"en": "Every row trained at the same FLOPs; held-out loss on {cont}-token continuations of {src} "
                         "tokens of documents that never entered the corpus; one training step of each decoder timed "
                         "{repeats} times, interleaved.",
                   "zh": "所有实验行使用相同的训练 FLOPs；在从未进入语料的文档上，给定 {src} 个 token 的前文，"
                         "计算接下来 {cont} 个 token 的损失；并交替计时两种 decoder 的单步训练 {repeats} 次。"},
    "objectives": {"en": "Each family trained with its objective (causal LM, prefix LM, T5 span corruption): "
                         "held-out loss on that objective at the start and the end of training, and the loss on "
                         "held-out text continuations against the corpus' unigram baseline.",
                   "zh": "每种架构用各自的训练目标训练（causal LM、prefix LM、T5 span corruption）："
                         "比较训练开始与结束时该目标上的留出损失，以及留出文本续写损失与语料一元模型基线。"},
    "loss_tokens": {"en": "The trainer counted, over every step of every run, the input tokens and the tokens that "
                          "carry loss.",
                    "zh": "训练器在每次运行的每一步统计输入 token 数和参与损失计算的 token 数。"},
    "metrics": {"en": "Multi-token answers (sort, max-and-min) scored by teacher-forced per-token accuracy p and by "
                      "greedy exact match, for every run and along the causal decoder's training checkpoints; "
                      "compared with p^L for answers of L tokens.",
                "zh": "对多 token 答案（排序、最大值与最小值）计算 teacher forcing 下的逐 token 准确率 p 和贪心解码的"
                      "完全匹配率，覆盖所有运行及 causal decoder 训练过程中的检查点，并与 p^L（L 为答案长度）比较。"},
    "composite": {"en": "Exact match of max-and-min (two subtasks) against the product of the exact matches of max and "
                        "of min, per run; the notes' arithmetic by the calculator.",
                  "zh": "每次运行中，比较“最大值与最小值”（两个子任务）的完全匹配率与“最大值”“最小值”各自完全匹配率"
                        "的乘积；笔记中的算术由计算器验证。"},
    "zero_shot": {"en": "The task suite in a prompt format never trained on (\"largest of 3 9 1 is\"), next-word and "
                        "ending choice on held-out text; likelihood ranking of 4 choices; few-shot: the same format "
                        "after {k} solved examples.",
                  "zh": "用训练中从未出现过的提示格式（“largest of 3 9 1 is”）测试任务，并在留出文本上做下一个词和"
                        "结尾选择；按似然对 4 个选项排序；few-shot 为在同一格式前给出 {k} 个示例。"},
    "low_rank": {"en": "Attention probabilities of every layer and head on held-out text, trained and at random "
                       "initialisation: bidirectional (the whole input as prefix; an encoder) and causal. Effective "
                       "rank (Roy & Vetterli 2007) divided by the length, and numerical rank.",
                 "zh": "在留出文本上取每层每个注意力头的注意力矩阵（训练后与随机初始化）：双向（整段输入作为前缀；"
                       "编码器）与因果。计算有效秩（Roy & Vetterli 2007）与长度之比以及数值秩。"},
    "twice_params": {"en": "Encoder-decoders with about the decoders' parameters (equal parameters) and with about "
                           "twice as many (equal compute per token) against the causal decoder at equal training "
                           "FLOPs; held-out loss.",
                     "zh": "在相同训练 FLOPs 下，将参数量与 decoder 相当（等参数）和约两倍（每 token 计算量相等）的 "
                           "encoder-decoder 与 causal decoder 比较留出损失。"},
    "large": {"en": "The calculator's parameter counts of the named models against the notes' threshold; the study's "
                    "own models for scale.",
              "zh": "用计算器统计各模型的参数量并与笔记中的门槛比较；本实验自己的模型作为规模参照。"},
    "175b": {"en": "The calculator's counts of GPT-3 175B, LLaMA-65B and PaLM-540B from their published shapes.",
             "zh": "计算器按公开形状统计 GPT-3 175B、LLaMA-65B 和 PaLM-540B 的参数量。"},
    "finetune": {"en": "Each family's pretrained model and the same architecture from random initialisation, "
                       "fine-tuned with the same steps on the same labelled examples of a task held out of "
                       "pretraining, at several labelled-set sizes; and the causal decoder adapted into an "
                       "encoder-decoder (T5Gemma-style) against the natively pretrained encoder-decoder of the same "
                       "shape and pretraining FLOPs. Test accuracy by likelihood ranking of 4 choices.",
                 "zh": "每种架构的预训练模型与随机初始化的同一结构，在预训练中未出现的任务上，用相同的步数、"
                       "相同的少量标注样本微调，覆盖多种标注规模；另将 causal decoder 按 T5Gemma 的方式适配为 "
                       "encoder-decoder，与形状和预训练 FLOPs 相同的原生 encoder-decoder 比较。测试准确率按 4 个"
                       "选项的似然排序计算。"},
    "cost": {"en": "The calculator's estimate of GPT-3's training: 6ND FLOPs for 300B tokens; Patterson et al. "
                   "2021's 10,000 V100s for 14.8 days at unimask's list price per V100-hour; and 1,024 A100s at "
                   "40% utilisation.",
             "zh": "计算器估算 GPT-3 的训练：300B token 的 6ND FLOPs；按 Patterson 等（2021）的 10,000 块 V100、"
                   "14.8 天及 unimask 的 V100 每小时标价；以及 1,024 块 A100、40% 利用率的情形。"},
    "co2": {"en": "The calculator's energy and emissions for Patterson et al. 2021's setup.",
            "zh": "计算器按 Patterson 等（2021）的设置估算能耗与排放。"},
}

RULES: dict[str, Text] = {
    "families": {"en": "Supported if every count matches its published total within the published tolerance.",
                 "zh": "每个模型的参数量都在公开数字的容差内吻合，则判为支持。"},
    "masks": {"en": "Supported if the change is exactly 0 in every causal-decoder run and positive in every other.",
              "zh": "所有 causal decoder 运行中变化恰好为 0、其他运行中都大于 0，则判为支持。"},
    "efficiency": {"en": "The verdict rule on held-out loss, causal decoder against prefix decoder.",
                   "zh": "对留出损失应用判定规则：causal decoder 对比 prefix decoder。"},
    "objectives": {"en": "Supported if every row's held-out loss on its own objective fell by more than 1 nat per "
                         "token: each objective trains its model.",
                   "zh": "若每个实验行在自身训练目标上的留出损失都下降超过 1 nat/token（即每种目标都能训练模型），"
                         "则判为支持。"},
    "loss_tokens": {"en": "The verdict rule on the share of tokens that carry loss, causal against prefix decoder.",
                    "zh": "对参与损失的 token 比例应用判定规则：causal decoder 对比 prefix decoder。"},
    "metrics": {"en": "Supported if exact match stays within 0.1 of p^L on average over the models with p of at "
                      "least 0.2: the sharp rise of exact match is then what a smoothly rising per-token accuracy "
                      "produces.",
                "zh": "在 p 至少为 0.2 的模型上，完全匹配率与 p^L 的平均差距不超过 0.1 则判为支持："
                      "此时完全匹配的急剧上升正是逐 token 准确率平滑上升的结果。"},
    "composite": {"en": "Supported if, averaged over the runs that solve both subtasks at least 10% of the time, "
                        "the composite's exact match is within 0.1 of the product of its subtasks'.",
                  "zh": "在两个子任务的完全匹配率都至少为 10% 的运行上平均，复合任务的完全匹配率与子任务乘积之差"
                        "不超过 0.1，则判为支持。"},
    "zero_shot": {"en": "The verdict rule on mean zero-shot accuracy, causal decoder against the best other row.",
                  "zh": "对平均 zero-shot 准确率应用判定规则：causal decoder 对比其余最好的实验行。"},
    "low_rank": {"en": "The verdict rule on the effective-rank ratio of trained models, causal against "
                       "bidirectional attention.",
                 "zh": "对训练后模型的有效秩比例应用判定规则：因果注意力对比双向注意力。"},
    "twice_params": {"en": "Supported if the equal-compute encoder-decoder beats the causal decoder and the "
                           "equal-parameter one does not; contradicted if the equal-parameter one beats it too or the "
                           "equal-compute one loses (each by the verdict rule); inconclusive otherwise or when the "
                           "prefix-LM and span-corruption encoder-decoders disagree.",
                     "zh": "若等计算量的 encoder-decoder 胜过 causal decoder 而等参数的不胜，则支持；若等参数的也胜出，"
                           "或等计算量的反而落后（均按判定规则），则相反；其他情况，或 prefix-LM 与 span corruption "
                           "两种 encoder-decoder 结论不一致时，无定论。"},
    "large": {"en": "Supported if every named model has more parameters than the threshold.",
              "zh": "所有列出的模型参数量都超过门槛，则判为支持。"},
    "175b": {"en": "Supported if each count is within 1% of the number in the model's name.",
             "zh": "每个模型的参数量与名字中的数字相差不超过 1%，则判为支持。"},
    "finetune": {"en": "The verdict rule at the smallest labelled set, pretrained against from scratch, per family: "
                       "supported if it holds for every family, contradicted if it is reversed for any.",
                 "zh": "在最小的标注规模上、逐个架构应用判定规则（预训练对比从零训练）：每个架构都成立则支持，"
                       "任何一个相反则判为相反。"},
    "cost": {"en": "Contradicted if every calculator estimate is more than 3 times the quoted figure (or under a "
                   "third of it).",
             "zh": "若计算器的所有估计都超过所引数字的 3 倍（或不到三分之一），则判为相反。"},
    "co2": {"en": "Contradicted if the calculator's estimate is more than 25% away from the quoted figure.",
            "zh": "若计算器的估计与所引数字相差超过 25%，则判为相反。"},
}

MEASURED: dict[str, Text] = {
    "efficiency": {"en": "Prefix-decoder loss minus causal-decoder loss: {gain} nats/token (it counts beyond "
                         "{spread}).",
                   "zh": "prefix decoder 与 causal decoder 的损失之差：{gain} nats/token（超过 {spread} 才算数）。"},
    "zero_shot": {"en": "Causal decoder minus the best other row ({best}): {gain} points (it counts beyond {spread}).",
                  "zh": "causal decoder 减去其余最好的实验行（{best}）：{gain} 个百分点（超过 {spread} 才算数）。"},
    "low_rank": {"en": "Mean effective-rank ratio of trained models: bidirectional {bi}, causal {ca}.",
                 "zh": "训练后模型的平均有效秩比例：双向 {bi}，因果 {ca}。"},
    "metrics": {"en": "Mean |exact match − p^L|: {gap}.", "zh": "|完全匹配率 − p^L| 的平均值：{gap}。"},
    "composite": {"en": "The calculator: {before} → {after}. Mean |composite − product| over runs: {gap}.",
                  "zh": "计算器：{before} → {after}。各次运行 |复合 − 乘积| 的平均值：{gap}。"},
    "finetune": {"en": "Accuracy gain of pretraining with {n} labelled examples of '{task}' (points): {gains}.",
                 "zh": "在 {n} 个“{task}”标注样本上，预训练带来的准确率提升（百分点）：{gains}。"},
    "twice_params": {"en": "Loss gain over the causal decoder (positive = better), prefix-LM encoder-decoder: equal "
                           "parameters {prefix_params}, equal compute {prefix_compute}; span corruption: "
                           "{span_params}, {span_compute}.",
                     "zh": "相对 causal decoder 的损失改善（正数更好），prefix-LM encoder-decoder：等参数 "
                           "{prefix_params}，等计算量 {prefix_compute}；span corruption："
                           "{span_params}、{span_compute}。"},
}

NOTES: dict[str, Text] = {
    "175b": {"en": "The notes add that 175B is about ChatGPT's size; OpenAI has not published ChatGPT's size, so that "
                   "part cannot be checked.",
             "zh": "笔记还说 175B 大约是 ChatGPT 的规模；OpenAI 没有公布 ChatGPT 的参数量，这一点无法验证。"},
    "co2": {"en": "The often-quoted figure is Strubell et al. 2019's estimate for a Transformer trained with neural "
                  "architecture search, not GPT-3; Patterson et al. 2021 estimate GPT-3 itself.",
            "zh": "常被引用的数字来自 Strubell 等（2019）对带神经架构搜索的 Transformer 的估计，并非 GPT-3；"
                  "Patterson 等（2021）给出的是 GPT-3 本身的估计。"},
    "composite": {"en": "The notes print the whole task's rates rounded; the calculator gives them exactly.",
                  "zh": "笔记给出的整体比例是取整后的数字；计算器给出精确值。"},
    "objectives": {"en": "A denoiser trained on short spans learns its objective yet continues text poorly (its "
                         "text loss can exceed the unigram baseline): it has to be adapted before it is prompted, "
                         "as UL2 and U-PaLM do with prefix-LM denoisers.",
                   "zh": "在短片段上训练的去噪模型能学会自身目标，却不擅长续写文本（其文本损失可能高于一元模型基线）："
                         "要先经过适配才能用提示词使用，UL2 和 U-PaLM 正是加入 prefix-LM 去噪来做到这一点。"},
    "loss_tokens": {"en": "Tokens carrying loss per training FLOP differ even more: span corruption predicts only the "
                          "masked spans.",
                    "zh": "按每训练 FLOP 计，差异更大：span corruption 只预测被遮盖的片段。"},
    "efficiency": {"en": "A prefix-decoder step costs the same as a causal-decoder step (the timing ratio above); the "
                         "difference is in what each step learns from.",
                   "zh": "prefix decoder 每步的计算开销与 causal decoder 相同（见上方计时比值）；差别在于每一步从多少 "
                         "token 中学习。"},
}

LABELS: dict[str, Text] = {
    "row:causal": {"en": "causal decoder, causal LM", "zh": "causal decoder，causal LM"},
    "row:prefix": {"en": "prefix decoder, prefix LM", "zh": "prefix decoder，prefix LM"},
    "row:encdec-span-params": {"en": "encoder-decoder, span corruption, equal parameters",
                               "zh": "encoder-decoder，span corruption，等参数"},
    "row:encdec-span-compute": {"en": "encoder-decoder, span corruption, equal compute",
                                "zh": "encoder-decoder，span corruption，等计算量"},
    "row:encdec-prefix-params": {"en": "encoder-decoder, prefix LM, equal parameters",
                                 "zh": "encoder-decoder，prefix LM，等参数"},
    "row:encdec-prefix-compute": {"en": "encoder-decoder, prefix LM, equal compute",
                                  "zh": "encoder-decoder，prefix LM，等计算量"},
    "row:ul2-causal": {"en": "causal decoder, UL2", "zh": "causal decoder，UL2"},
    "row:ul2-prefix": {"en": "prefix decoder, UL2", "zh": "prefix decoder，UL2"},
    "row:ul2-encdec": {"en": "encoder-decoder, UL2, equal compute", "zh": "encoder-decoder，UL2，等计算量"},
    "baseline:unigram": {"en": "unigram baseline (nats/token)", "zh": "一元模型基线（nats/token）"},
    "baseline:chance": {"en": "chance (4 choices)", "zh": "随机水平（4 选 1）"},
    "timing:prefix_over_causal": {"en": "prefix / causal step time", "zh": "prefix / causal 单步时间之比"},
    "emergence:points": {"en": "models and checkpoints scored", "zh": "参与评估的模型与检查点数"},
    "emergence:mean_gap": {"en": "mean |exact match − p^L|", "zh": "|完全匹配率 − p^L| 平均值"},
    "emergence:low_p": {"en": "where p < 0.5: mean p -> mean exact match",
                        "zh": "p < 0.5 时：平均 p -> 平均完全匹配率"},
    "composite:arithmetic": {"en": "the notes' subtasks, by the calculator", "zh": "笔记中的子任务算例（计算器）"},
    "rank:trained_bidirectional": {"en": "trained, bidirectional: effective rank / length",
                                   "zh": "训练后，双向：有效秩 / 长度"},
    "rank:trained_causal": {"en": "trained, causal: effective rank / length", "zh": "训练后，因果：有效秩 / 长度"},
    "rank:init_bidirectional": {"en": "random init, bidirectional", "zh": "随机初始化，双向"},
    "rank:init_causal": {"en": "random init, causal", "zh": "随机初始化，因果"},
    "rank:full_causal": {"en": "causal matrices of full numerical rank", "zh": "数值满秩的因果矩阵比例"},
    "rank:full_bidirectional": {"en": "bidirectional matrices of full numerical rank", "zh": "数值满秩的双向矩阵比例"},
    "finetune:adapted": {"en": "adapted encoder-decoder vs native (by labelled examples)",
                         "zh": "适配的 encoder-decoder 对比原生（按标注样本数）"},
    "row:adapted-encdec": {"en": "encoder-decoder adapted from the causal decoder",
                           "zh": "由 causal decoder 适配的 encoder-decoder"},
    "large:named": {"en": "named models above the threshold", "zh": "超过门槛的模型数"},
    "large:smallest": {"en": "smallest named model", "zh": "最小的列出模型"},
    "large:study": {"en": "this study's models", "zh": "本实验的模型"},
    "cost:v100": {"en": "10,000 V100s x 14.8 days at list price", "zh": "10,000 块 V100 × 14.8 天，按标价"},
    "cost:a100": {"en": "1,024 A100s at 40% utilisation, list price", "zh": "1,024 块 A100，40% 利用率，按标价"},
    "cost:break_even": {"en": "V100-hour price the quoted figure needs", "zh": "所引数字所需的 V100 每小时价格"},
    "cost:flops": {"en": "training FLOPs", "zh": "训练 FLOPs"},
    "co2:calculator": {"en": "calculator, Patterson et al.'s setup", "zh": "计算器，按 Patterson 等的设置"},
    "co2:patterson": {"en": "published for GPT-3", "zh": "GPT-3 的公开估计"},
    "co2:strubell": {"en": "the source of the quoted figure", "zh": "所引数字的出处"},
}

FIGURES: dict[str, Text] = {
    "masks": {"en": "The attention masks of the three families (blue = may attend).",
              "zh": "三类架构的注意力掩码（蓝色 = 可以关注）。"},
    "params": {"en": "Parameters of the named models, counted from their published shapes.",
               "zh": "按公开形状统计的各模型参数量。"},
    "information_flow": {"en": "Change at the first input position when the last input token changes.",
                         "zh": "最后一个输入 token 改变时，第一个输入位置输出的变化。"},
    "loss_tokens": {"en": "Share of tokens that carry loss, and loss tokens per training GFLOP.",
                    "zh": "参与损失的 token 比例，以及每 GFLOP 训练计算对应的损失 token 数。"},
    "curves": {"en": "Held-out loss during training against training FLOPs (mean over seeds, band = range).",
               "zh": "训练过程中的留出损失随训练 FLOPs 的变化（各种子平均，阴影为范围）。"},
    "target_loss": {"en": "Held-out loss of text continuations and task answers, with the unigram baselines.",
                    "zh": "文本续写与任务答案的留出损失，以及一元模型基线。"},
    "accuracy": {"en": "Task accuracy by likelihood ranking: in-distribution, zero-shot and few-shot; dashed: chance.",
                 "zh": "按似然排序的任务准确率：分布内、zero-shot 与 few-shot；虚线为随机水平。"},
    "rank": {"en": "Effective rank / length of attention matrices, bidirectional and causal, trained and at init.",
             "zh": "注意力矩阵的有效秩 / 长度：双向与因果，训练后与初始化时。"},
    "emergence": {"en": "Exact match against per-token accuracy p for multi-token answers; curves: p^L.",
                  "zh": "多 token 答案的完全匹配率与逐 token 准确率 p 的关系；曲线为 p^L。"},
    "composite": {"en": "Exact match of max-and-min against the product of max's and min's.",
                  "zh": "“最大值与最小值”的完全匹配率与“最大值”“最小值”完全匹配率乘积的对比。"},
    "encdec": {"en": "Held-out loss against parameters at equal training FLOPs.",
               "zh": "相同训练 FLOPs 下留出损失与参数量的关系。"},
    "finetune": {"en": "Test accuracy against labelled examples: pretrained (solid) and from scratch (dashed); "
                       "the adapted encoder-decoder against the native one.",
                 "zh": "测试准确率与标注样本数的关系：预训练（实线）与从零训练（虚线）；以及适配得到的 "
                       "encoder-decoder 与原生 encoder-decoder 的对比。"},
    "cost": {"en": "GPT-3's training cost and emissions: the quoted figures against the calculator's estimates.",
             "zh": "GPT-3 的训练成本与排放：所引数字与计算器估计的对比。"},
}


def t(table: dict[str, Text], key: str, lang: str, **values: object) -> str:
    """``table[key][lang]`` with placeholders filled; a missing placeholder stays visible as ``{name}``."""
    entry = table.get(key)
    if entry is None:
        return key
    text = entry[lang]
    try:
        return text.format(**values)
    except (KeyError, IndexError):
        return text
