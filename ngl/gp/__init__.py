"""The GP loss search: primitives, loss expressions (parse, print, compile), sanity filter, search loop."""

from ngl.gp.compare import compare
from ngl.gp.compiler import (
    compile_program,
    generate_source,
)
from ngl.gp.executors import (
    InProcessExecutor,
)
from ngl.gp.expression import (
    MAX_DEPTH,
    MAX_SIZE,
    ExpressionLoss,
    LossExpression,
    as_expression,
    compile_loss_text,
)
from ngl.gp.parse import (
    Node,
    format_infix,
    format_prefix,
    looks_like_expression,
    parse_program,
    program_tree,
    text_key,
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
from ngl.gp.result import (
    HallOfFameEntry,
    SearchResult,
    load_result,
    summarise_generations,
)
from ngl.gp.rundir import (
    CHECKPOINT,
    HISTORY,
    OPTIONS,
    PRE_01_CONFIG,
    REFERENCES,
    RESCORE,
    RESCORE_PLAN,
    SPEC,
    RunDirError,
    RunFiles,
    config_diff,
    history_rows,
    read_checkpoint,
    read_rescore_plan,
    read_run_files,
    reference_rows,
    rescore_rows,
    rescore_seed,
    rng_from_json,
    rng_to_json,
    run_dir_lock,
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
    resume,
    run_search,
)
from ngl.gp.spec import (
    OPTION_FIELDS,
    SPEC_FIELDS,
    RunOptions,
    SearchSpec,
)
from ngl.gp.tune import (
    TuneResult,
    TuneSpec,
    load_tuning,
    tune_constants,
    with_constants,
)
from ngl.gp.user_operators import register_operator, user_operators
from ngl.gp.worker import (
    evaluate_chunk,
    evaluate_losses,
)
from ngl.losses.registry import register_text_compiler

__all__ = [
    "register_operator",
    "user_operators",
    "compare",
    "as_expression",
    "TuneResult",
    "TuneSpec",
    "load_tuning",
    "tune_constants",
    "with_constants",
    "CHECKPOINT",
    "ExpressionLoss",
    "GPSearch",
    "HISTORY",
    "HallOfFameEntry",
    "InProcessExecutor",
    "LEAVES",
    "PRE_01_CONFIG",
    "Leaf",
    "LossExpression",
    "MAX_DEPTH",
    "MAX_SIZE",
    "Node",
    "OPERATORS",
    "OPTIONS",
    "OPTION_FIELDS",
    "REFERENCES",
    "RESCORE",
    "RESCORE_PLAN",
    "PRESETS",
    "Primitive",
    "PrimitiveSet",
    "Probe",
    "RunDirError",
    "RunFiles",
    "RunOptions",
    "SPEC",
    "SPEC_FIELDS",
    "SanityReport",
    "SearchResult",
    "SearchSpec",
    "available_leaves",
    "available_operators",
    "check_candidate",
    "compile_loss_text",
    "compile_program",
    "config_diff",
    "evaluate_chunk",
    "evaluate_losses",
    "format_infix",
    "format_prefix",
    "generate_source",
    "gplearn_functions",
    "history_rows",
    "load_result",
    "looks_like_expression",
    "make_probe",
    "parse_program",
    "preset",
    "program_tree",
    "read_checkpoint",
    "read_rescore_plan",
    "read_run_files",
    "reference_rows",
    "rescore_rows",
    "rescore_seed",
    "resume",
    "rng_from_json",
    "rng_to_json",
    "run_dir_lock",
    "run_search",
    "sample_expressions",
    "summarise_generations",
    "text_key",
]

# `ngl.get_loss(text)` compiles loss-expression text through this layer (ngl.losses sits below
# ngl.gp and cannot import it): plugging the parser in is the one thing importing ngl.gp does.
register_text_compiler(compile_loss_text)
