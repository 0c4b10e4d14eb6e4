"""Statistical ranking engine: mixed models, paired tests, subject bootstrap, challengeR
schemes, consensus across tasks. Pure Python (no Django); see docs/statistics.md."""

from .consensus import ConsensusResult, consensus
from .engine import pairwise_contrasts, rank_methods
from .errors import RankingError
from .result import ENGINE_VERSION, BootstrapInfo, Contrast, MethodResult, ModelInfo, RankingResult

__all__ = [
    "ENGINE_VERSION",
    "BootstrapInfo",
    "ConsensusResult",
    "Contrast",
    "MethodResult",
    "ModelInfo",
    "RankingError",
    "RankingResult",
    "consensus",
    "pairwise_contrasts",
    "rank_methods",
]
