"""Scoring shared by the comparison study, ``unimask eval`` and evaluation harnesses: how each family
reads a (source, continuation) pair (``formats``) and the scores on it (``scoring``)."""

from unimask.evaluation.formats import ReadingFormat, reading_format
from unimask.evaluation.scoring import PairScore, greedy_answers, rank_choices, score_pairs

__all__ = ["PairScore", "ReadingFormat", "greedy_answers", "rank_choices", "reading_format", "score_pairs"]
