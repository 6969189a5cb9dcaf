"""The GP loss search: primitives, loss expressions (parse, print, compile), sanity filter, search loop."""

from ngl.gp.executors import (
    InProcessExecutor,
)
from ngl.gp.expression import (
    MAX_DEPTH,
    MAX_SIZE,
    ExpressionLoss,
    LossExpression,
    compile_loss_text,
)
from ngl.gp.primitives import (
    LEAVES,
    OPERATORS,
    PRESETS,
    Leaf,
    Primitive,
    PrimitiveSet,
    available_leaves,
    available_operators,
    gplearn_functions,
    preset,
)
from ngl.gp.sampling import (
    sample_expressions,
)
from ngl.gp.sanity import (
    Probe,
    SanityReport,
    check_candidate,
    make_probe,
)
from ngl.gp.search import (
    GPSearch,
    RunDirError,
    SearchConfig,
    SearchResult,
    config_diff,
    evaluate_chunk,
    load_result,
    resume,
    run_dir_lock,
    run_search,
)
from ngl.losses.registry import register_text_compiler

__all__ = [
    "ExpressionLoss",
    "GPSearch",
    "InProcessExecutor",
    "LEAVES",
    "Leaf",
    "LossExpression",
    "MAX_DEPTH",
    "MAX_SIZE",
    "OPERATORS",
    "PRESETS",
    "Primitive",
    "PrimitiveSet",
    "Probe",
    "RunDirError",
    "SanityReport",
    "SearchConfig",
    "SearchResult",
    "available_leaves",
    "available_operators",
    "check_candidate",
    "compile_loss_text",
    "config_diff",
    "evaluate_chunk",
    "gplearn_functions",
    "load_result",
    "make_probe",
    "preset",
    "resume",
    "run_dir_lock",
    "run_search",
    "sample_expressions",
]

# `ngl.get_loss(text)` compiles loss-expression text through this layer (ngl.losses sits below
# ngl.gp and cannot import it): plugging the parser in is the one thing importing ngl.gp does.
register_text_compiler(compile_loss_text)
