"""The ``gaitbench`` command line. Importing it (and ``--help``, ``plugins``, ``methods``,
``protocols``) never imports torch; commands import what they need when they run."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from .errors import GaitbenchError


DEBUG_ENV = "GAITBENCH_DEBUG"


class _Group(click.Group):
    """Every failure ends in one ``Error: ...`` line and a non-zero exit, never a traceback:
    gaitbench's own errors (a user's mistake) as they are; anything else (a bug, or an input not
    checked yet) as a line naming the command, its input and the exception. ``--debug`` (anywhere
    on the line) or ``GAITBENCH_DEBUG=1`` shows the traceback instead."""

    def parse_args(self, ctx, args):
        end = args.index("--") if "--" in args else len(args)
        if "--debug" in args[:end]:  # accepted after the command too, where users put it
            args = ["--debug", *[a for a in args[:end] if a != "--debug"], *args[end:]]
        ctx.meta["gaitbench.args"] = [a for a in args if a != "--debug"]
        return super().parse_args(ctx, args)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise  # click's own: usage errors and exits, already one line
        except KeyboardInterrupt:
            click.echo("\ninterrupted; everything already written is kept", err=True)
            sys.exit(130)
        except Exception as exc:
            if ctx.params.get("debug"):
                raise
            if type(exc).__name__ == "TrainingInterrupted":
                click.echo(f"Error: {exc}", err=True)
                sys.exit(130)
            if isinstance(exc, GaitbenchError):
                raise click.ClickException(str(exc)) from None
            import shlex

            text = " ".join(str(exc).split())  # one line, however the exception wrote it
            text = text if len(text) <= 400 else text[:400] + " ..."
            command = shlex.join(["gaitbench", *ctx.meta.get("gaitbench.args", [])])
            raise click.ClickException(
                f"`{command}` failed: {type(exc).__name__}: {text} (an unexpected error: please report it with the "
                f"traceback, shown with --debug or {DEBUG_ENV}=1)") from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="gaitbench", prog_name="gaitbench")
@click.option("--debug", is_flag=True, envvar=DEBUG_ENV,
              help=f"Show the traceback of an error instead of one line (also: {DEBUG_ENV}=1).")
def cli(debug):
    """gaitbench: benchmark harness for silhouette-based gait recognition.

    \b
    Quick start (built-in synthetic data, CPU):
      gaitbench run --method gaitset --protocol casiab
    """


def _plugins():
    from .plugins import get_plugins

    return get_plugins()


def _run_options(func):
    """The options shared by ``run`` and ``train``."""
    options = [
        click.option("--method", "-m", default=None, help="Method name (see `gaitbench methods`)."),
        click.option("--protocol", "-p", default=None,
                     help="Protocol name (see `gaitbench protocols`) or a protocol file."),
        click.option("--data-root", type=click.Path(), default=None,
                     help="Dataset root (OpenGait pkl tree or gaitbench packed store). Default: built-in synthetic data."),
        click.option("--partition", type=click.Path(), default=None,
                     help="OpenGait-style partition JSON (TRAIN_SET/TEST_SET)."),
        click.option("--recipe", default=None,
                     help="Recipe name or file. Default: 'quick' on synthetic data, else the protocol's paper recipe."),
        click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                     help="Override a recipe field, e.g. sampler.P=4 or stages.rerank.k1=20."),
        click.option("--stage", "stages", multiple=True, metavar="NAME",
                     help="Post-processing stage for the evaluation, in order (see `gaitbench stages`)."),
        click.option("--iterations", type=int, default=None, help="Training iterations (default: the recipe's)."),
        click.option("--device", default="cpu", show_default=True, help="cpu or cuda[:N]."),
        click.option("--seed", type=int, default=0, show_default=True,
                     help="Seeds Python, numpy, torch and the batch sampler."),
        click.option("--deterministic", is_flag=True, help="Use torch's deterministic algorithms."),
        click.option("--out", type=click.Path(), default=None,
                     help="Run directory (default: runs/<method>-<protocol>-<time>)."),
        click.option("--checkpoint", type=click.Path(), default=None,
                     help="Start from these weights (a gaitbench or imported checkpoint); with --iterations 0 "
                          "this evaluates them."),
        click.option("--init-from", type=click.Path(), default=None,
                     help="Fine-tune: start from a gaitbench checkpoint of the same architecture trained under "
                          "another protocol (a classifier of another class count is re-initialised)."),
        click.option("--truth", type=click.Path(), default=None,
                     help="Identification protocols (hid): the probes' identities (videoID,label) to score the "
                          "submission; default: the dataset's own probe_truth.csv, if any."),
        click.option("--nproc-per-node", type=int, default=1, show_default=True,
                     help="Processes on this machine (DistributedDataParallel through torchrun)."),
        click.option("--workers", type=int, default=0, show_default=True,
                     help="Loader processes for training batches (the batches are the same for any number)."),
        click.option("--strict", is_flag=True,
                     help="Stop at the first unreadable sequence instead of reporting and skipping it."),
        click.option("--quiet", is_flag=True,
                     help="No progress displays; one line per phase instead (what, how many, elapsed time)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _execute(options: dict, *, resume: bool, train_only: bool, smoke: bool = False):
    import os

    from .run import RunSettings, execute

    nproc = options.pop("nproc_per_node")
    if nproc > 1 and int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        from .training.distributed import relaunch_with_torchrun

        argv, skip = [], False
        for arg in sys.argv[1:]:
            if skip:
                skip = False
            elif arg == "--nproc-per-node":
                skip = True
            elif not arg.startswith("--nproc-per-node="):
                argv.append(arg)
        sys.exit(relaunch_with_torchrun(nproc, argv))
    for name in ("method", "protocol"):
        if not options.get(name):
            raise GaitbenchError(f"--{name} is required")
    quiet = options.pop("quiet")
    options["overrides"] = list(options["overrides"])
    options["stages"] = list(options["stages"])
    return execute(RunSettings(**options, progress=not quiet, resume=resume, train_only=train_only, smoke=smoke),
                   echo=click.echo)


@cli.command()
@_run_options
@click.option("--resume", is_flag=True, help="Continue the interrupted run in --out from its last checkpoint.")
@click.option("--smoke", is_flag=True,
              help="A smoke run: a few iterations on a few synthetic subjects, end to end in seconds (checks that "
                   "a method runs; its numbers mean nothing).")
def run(resume, smoke, **options):
    """Train METHOD under PROTOCOL, embed the test set, evaluate and write OUT/result.json."""
    _execute(options, resume=resume, train_only=False, smoke=smoke)


@cli.command()
@_run_options
@click.option("--resume", "resume_dir", type=click.Path(), default=None,
              help="Continue the run in this directory, with the settings it was started with.")
def train(resume_dir, **options):
    """Train METHOD under PROTOCOL and write checkpoints (no evaluation)."""
    if resume_dir:
        from .io import read_json

        saved = read_json(Path(resume_dir) / "run_settings.json", "run's settings file")
        for key, value in saved.items():
            if key in options and key not in {"nproc_per_node"}:
                options[key] = value
        options["out"] = resume_dir
        options["overrides"] = tuple(saved.get("overrides", ()))
    _execute(options, resume=bool(resume_dir), train_only=True)


@cli.command()
@click.option("--method", "-m", required=True)
@click.option("--checkpoint", required=True, type=click.Path(), help="A gaitbench checkpoint (.pt).")
@click.option("--protocol", "-p", required=True)
@click.option("--data-root", type=click.Path(), default=None, help="Default: the protocol's built-in synthetic data.")
@click.option("--partition", type=click.Path(), default=None)
@click.option("--out", required=True, type=click.Path(), help="Embeddings file (.npz) to write.")
@click.option("--device", default="cpu", show_default=True)
@click.option("--quiet", is_flag=True)
def embed(method, checkpoint, protocol, data_root, partition, out, device, quiet):
    """Embed the test set of PROTOCOL with a trained checkpoint."""
    from . import load_model, steps
    from .protocols import resolve_protocol
    from .run import RunSettings
    from .training.checkpoint import read_checkpoint
    from .training.distributed import SINGLE

    plugins = _plugins()
    plugins.method(method)
    proto = resolve_protocol(protocol, plugins.protocols())
    payload = read_checkpoint(checkpoint)
    if payload["method"] != method:
        raise GaitbenchError(f"{checkpoint} holds method {payload['method']!r}, not {method!r}")
    metric = ((payload.get("recipe") or {}).get("eval") or {}).get("metric") or proto.evaluation.metric
    del payload
    settings = RunSettings(method=method, protocol=protocol, data_root=data_root, progress=not quiet)
    store = steps.open_store(settings, proto, SINGLE, click.echo)
    steps.report_malformed(store, False, click.echo)
    selection = steps.select(store, proto, partition)
    model = load_model(checkpoint).to(device)
    from .progress import phase_lines

    with phase_lines(quiet):
        emb = steps.embed(model, store, selection.test_rows, device=device, progress=not quiet)
    test = steps.Embedded(emb, selection.test_rows, {}, 0.0)
    written = steps.write_test_embeddings(out, test, store, selection, method=method, metric=metric)
    click.echo(f"wrote {len(test.rows)} embeddings {list(emb.shape[1:])} to {written}"
               f"{' (SYNTHETIC data)' if store.synthetic else ''}")


def _parse_bytes(text: str | None) -> int | None:
    if text is None:
        return None
    import re

    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)\s*", text.lower())
    if not m:
        raise GaitbenchError(f"--max-memory {text!r}: expected a size such as 512MB or 4GB")
    scale = {"": 1, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}[m.group(2)[:1]]
    return int(float(m.group(1)) * scale)


@cli.command()
@click.option("--protocol", "-p", required=True, help="Protocol name or file.")
@click.option("--embeddings", "files", required=True, multiple=True, type=click.Path(),
              help="Embeddings file (.npz) as written by embed/run; several with --fuse.")
@click.option("--partition", type=click.Path(), default=None,
              help="OpenGait-style partition JSON (Gait3D's PROBE_SET); default: the one recorded with the embeddings.")
@click.option("--stage", "stage_names", multiple=True, metavar="NAME",
              help="Post-processing stage to apply, in order (see `gaitbench stages`).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="metric=euc|cos|flat_euc, missing_gallery=..., verification=true (TAR@FAR, EER, ROC), "
                   "stages.NAME.PARAM=VALUE.")
@click.option("--fuse", type=click.Choice(["concat", "mean-distance"]), default=None,
              help="How several --embeddings of the same sequences are combined.")
@click.option("--pipeline", default=None,
              help="A named evaluation pipeline (fusion + stages, e.g. hid2021) or a pipeline file.")
@click.option("--normalize", is_flag=True, help="With --fuse concat: L2-normalise each method's parts first.")
@click.option("--device", default="cpu", show_default=True)
@click.option("--max-memory", default=None, help="Budget for distance blocks, e.g. 2GB (default 512MB).")
@click.option("--submission", type=click.Path(), default=None,
              help="Write the protocol's submission file here: GREW's (instead of local metrics) or HID's "
                   "videoID,label predictions.")
@click.option("--truth", type=click.Path(), default=None,
              help="Identification protocols (hid): the probes' identities (videoID,label); scores the predictions.")
@click.option("--json", "json_out", type=click.Path(), default=None, help="Write the report as JSON here.")
def evaluate(protocol, files, partition, stage_names, overrides, fuse, pipeline, normalize, device, max_memory,
             submission, truth, json_out):
    """Evaluate saved embeddings under PROTOCOL, without the model."""
    from .evaluation.pipeline import plan_evaluation
    from .io import write_json_atomic
    from .protocols import resolve_protocol
    from .results.tables import describe_metrics, interval_line, report_table
    from .steps import evaluate_saved

    plugins = _plugins()
    proto = resolve_protocol(protocol, plugins.protocols())
    eplan = plan_evaluation(files, stages=stage_names, overrides=overrides, fuse=fuse, normalize=normalize,
                            pipeline=pipeline, plugins=plugins)
    max_bytes = _parse_bytes(max_memory)
    done = evaluate_saved(proto, files, eplan, partition=partition, truth=truth, submission=submission, device=device,
                          max_bytes=max_bytes, say=click.echo)
    tag = " - SYNTHETIC DATA" if done.synthetic else ""
    if done.report is None:  # GREW's official submission file
        info = done.submission_info
        click.echo(f"wrote {info['probes']} probes x top {info['top']} identities (gallery {info['gallery']}) "
                   f"to {submission}{tag}")
        return
    report, proto = done.report, done.protocol
    if report.predictions is not None and submission:
        click.echo(f"wrote {len(report.predictions.videos)} predictions (videoID,label) to {submission}{tag}")
    click.echo(f"{proto.describe()} - {describe_metrics(proto)}{tag}"
               f"{'; stages: ' + ', '.join(s['name'] for s in report.stages) if report.stages else ''}"
               f"{'; fused (' + eplan.fuse + ')' if eplan.fuse else ''}")
    click.echo(report_table(report))
    line = interval_line(report.tables)
    if line:
        click.echo(line)
    click.echo("timings: " + ", ".join(f"{k} {v:.3f} s" for k, v in report.timings.items()))
    if json_out:
        identification = proto.evaluation.kind == "identification"
        write_json_atomic(json_out, {"protocol": report.protocol, "protocol_version": report.protocol_version,
                                     "synthetic": done.synthetic if done.synthetic_recorded else None,
                                     "metrics": report.metrics, "tables": report.tables,
                                     "timings": report.timings, "stages": report.stages,
                                     "embeddings": [str(f) for f in files],
                                     "fusion": {"mode": eplan.fuse, "normalize": eplan.normalize} if eplan.fuse else None,
                                     "pipeline": {"name": eplan.pipeline.name, "source": eplan.pipeline.source}
                                     if eplan.pipeline else None,
                                     "metric": eplan.changes.get("metric", proto.evaluation.metric),
                                     **({"submission": submission, "truth": truth} if identification else {})})


@cli.command("stages")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def stages_command(as_json):
    """List post-processing stages: name, plugin, whether transductive, parameters."""
    from tabulate import tabulate

    rows = []
    registry = _plugins().stages()
    for name, st in registry.items():
        rows.append({"name": name, "plugin": registry.plugin_of(name), "transductive": st.transductive,
                     "sides": getattr(st, "sides", ""), "defaults": dict(st.defaults), "description": st.description})
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    click.echo(tabulate([[r["name"], "yes" if r["transductive"] else "no", r["sides"],
                          ", ".join(f"{k}={v}" for k, v in r["defaults"].items()), r["description"]] for r in rows],
                        headers=["stage", "transductive", "side", "parameters", "description"], tablefmt="github"))


@cli.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins_command(as_json):
    """List plugins: distribution, version, hooks, what each registered, load errors."""
    infos = _plugins().info()
    if as_json:
        click.echo(json.dumps([i.as_dict() for i in infos], indent=2))
        return
    for info in infos:
        dist = f"{info.distribution} {info.version}" if info.distribution else "(in-process)"
        click.echo(f"{info.name}  [{dist}]")
        click.echo(f"  hooks: {', '.join(info.hooks) or '-'}")
        for kind, names in sorted(info.registered.items()):
            click.echo(f"  {kind}s: {', '.join(sorted(names))}")
        for error in info.errors:
            click.echo(f"  ERROR: {error}")


@cli.command()
def methods():
    """List the registered methods."""
    registry = _plugins().methods()
    for name, method in registry.items():
        click.echo(f"{name:<12} {method.description}  [plugin {registry.plugin_of(name)}; variants: "
                   f"{', '.join(method.variants)}]")
        click.echo(f"{'':<12} paper: {method.paper}")


@cli.command("new-plugin")
@click.argument("name")
@click.option("--dir", "directory", type=click.Path(file_okay=False), default=".", show_default=True,
              help="Folder to write the distribution gaitbench-NAME into.")
def new_plugin(name, directory):
    """Write a working method plugin NAME to start from: a distribution with the entry point, the
    hook implementation, a small model, a quick recipe and tests (the method contract and a smoke
    run) that pass as written."""
    from .scaffold import PluginNames, write_plugin

    path = write_plugin(name, directory, taken=_plugins().methods().names())
    names = PluginNames.of(name)
    click.echo(f"wrote {path}: the {name} method plugin (distribution {names.dist}, package {names.package})")
    click.echo("next:")
    click.echo(f"  cd {path}")
    click.echo('  pip install -e ".[test]"      # offline: pip install --no-index --no-build-isolation --no-deps -e .')
    click.echo(f"  pytest                        # tests/test_{names.module}.py: the contract and a smoke run")
    click.echo(f"  gaitbench run --method {name} --protocol casiab --smoke")


@cli.command()
def protocols():
    """List the registered protocols."""
    registry = _plugins().protocols()
    for name, proto in registry.items():
        click.echo(f"{name:<12} v{proto.version}  {proto.description}  [plugin {registry.plugin_of(name)}]")


@cli.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path())
@click.option("--protocol", "-p", default=None, help="Only runs of this protocol.")
@click.option("--format", "fmt", default="markdown", show_default=True,
              type=click.Choice(["markdown", "latex", "csv", "html", "json"]))
@click.option("--published", is_flag=True, help="Add the published numbers of the papers, marked 'paper'.")
@click.option("--per-view", is_flag=True, help="The per-probe-view table (papers' CASIA-B layout) instead.")
@click.option("--out", type=click.Path(), default=None, help="Write to this file instead of printing.")
@click.option("--plot", type=click.Path(), default=None,
              help="Also save an accuracy-vs-cost scatter (.png or .svg) of the first table.")
@click.option("--plot-x", default="params", show_default=True,
              help="Cost column for --plot: params, gflops, train_seq_s or infer_seq_s.")
@click.option("--reports", is_flag=True,
              help="Write each run's report.html first (those missing), so the HTML page links every run row.")
def leaderboard(runs, protocol, fmt, published, per_view, out, plot, plot_x, reports):
    """Build a leaderboard from RUNS (run directories, searched recursively, or result.json files)."""
    from .results.leaderboard import build_tables, load_published, per_view_table, render
    from .results.record import RunRecord, load_records

    records = load_records(runs)
    if reports:
        from .results.report import write_report

        for r in records:
            if isinstance(r, RunRecord) and r.source and not (Path(r.source).parent / "report.html").is_file():
                click.echo(f"wrote {write_report(Path(r.source))}", err=True)
    pub = load_published() if published else None
    if per_view:
        from tabulate import tabulate

        if protocol:
            records = [r for r in records if getattr(r, "protocol", None) == protocol]
        frame = per_view_table(records, pub)
        text = {"markdown": lambda: tabulate(frame, headers="keys", tablefmt="github", showindex=False, floatfmt=".1f"),
                "latex": lambda: tabulate(frame, headers="keys", tablefmt="latex_booktabs", showindex=False,
                                          floatfmt=".1f"),
                "csv": lambda: frame.to_csv(index=False),
                "html": lambda: frame.to_html(index=False, float_format="%.1f"),
                "json": lambda: frame.to_json(orient="records", indent=2)}[fmt]() + "\n"
    else:
        tables = build_tables(records, protocol, pub)
        text = render(tables, fmt, page_dir=Path(out).parent if out else None)
        if plot and tables:
            from .results.plots import accuracy_vs_cost

            frame = tables[0].frame
            metric = next((c for c in frame.columns if "rank1" in c or c in {"mAP"}), None)
            if plot_x not in frame.columns or metric is None:
                raise GaitbenchError(f"--plot needs columns {plot_x!r} and an accuracy metric in the leaderboard; "
                                     f"it has {list(frame.columns)}")
            accuracy_vs_cost(frame[frame["source"] == "run"], plot_x, metric, "method", out=plot)
            click.echo(f"wrote {plot}", err=True)
    if out:
        from .io import write_text_atomic

        Path(out).parent.mkdir(parents=True, exist_ok=True)  # --out site/board.html into a new folder
        write_text_atomic(out, text)
        click.echo(f"wrote {out}")
    else:
        click.echo(text, nl=False)


@cli.command("compare")
@click.argument("run_a", type=click.Path())
@click.argument("run_b", type=click.Path())
def compare_command(run_a, run_b):
    """Per-metric and per-view differences between two runs (B - A)."""
    from tabulate import tabulate

    from .results.leaderboard import compare
    from .results.record import read_run

    a, b = read_run(run_a), read_run(run_b)
    if a.protocol != b.protocol:
        raise GaitbenchError(f"the runs use different protocols ({a.protocol} and {b.protocol}): not comparable")
    if a.dataset.fingerprint != b.dataset.fingerprint:
        click.echo("note: the runs used different datasets (fingerprints differ)")
    metrics, per_view = compare(a, b)
    click.echo(tabulate(metrics, headers="keys", tablefmt="github", showindex=False,
                        floatfmt=("", ".2f", ".2f", "+.2f")))
    if per_view is not None:
        click.echo("\nper probe view, B - A:")
        click.echo(tabulate(per_view, headers="keys", tablefmt="github", showindex=False, floatfmt="+.2f"))


@cli.command("import-checkpoint")
@click.argument("checkpoint", type=click.Path())
@click.option("--from", "source", required=True, type=click.Choice(["opengait"]), help="Checkpoint format.")
@click.option("--method", "-m", required=True)
@click.option("--variant", default=None, help="Default: the method's default variant.")
@click.option("--out", required=True, type=click.Path(), help="gaitbench checkpoint to write.")
def import_checkpoint(checkpoint, source, method, variant, out):
    """Convert an OpenGait CHECKPOINT into a gaitbench checkpoint (strict: every key and shape)."""
    from .checkpoint_import import import_opengait

    info = import_opengait(checkpoint, _plugins().method(method), variant, out)
    extra = f", {info['model_kwargs']}" if info["model_kwargs"] else ""
    click.echo(f"imported {info['keys']} tensors of {info['method']} [{info['variant']}{extra}] "
               f"(iteration {info['iteration']}) to {out}")


@cli.command()
@click.option("--method", "-m", required=True)
@click.option("--variant", default=None, help="Default: the recipe's variant.")
@click.option("--protocol", "-p", default="casiab", show_default=True, help="Whose paper recipe gives the shapes.")
@click.option("--recipe", default=None, help="Recipe giving the batch shapes (default: the protocol's).")
@click.option("--device", default="cpu", show_default=True)
@click.option("--amp", default="none", type=click.Choice(["none", "bf16", "fp16"]), show_default=True)
@click.option("--compile", "compile_", is_flag=True, help="torch.compile the model (compile time reported apart).")
@click.option("--channels-last", is_flag=True)
@click.option("--batch", default=None, help="Training batch P,K (default: the recipe's), e.g. 2,2 on a CPU.")
@click.option("--frames", type=int, default=None, help="Training clip length (default: the recipe's).")
@click.option("--test-frames", type=int, default=80, show_default=True, help="Inference sequence length.")
@click.option("--infer-batch", type=int, default=16, show_default=True, help="Sequences per inference batch.")
@click.option("--steps", type=int, default=10, show_default=True)
@click.option("--warmup", type=int, default=3, show_default=True)
@click.option("--data", type=click.Path(), default=None,
              help="Also measure the training loader alone on this dataset (packed store or pkl tree).")
@click.option("--workers", type=int, default=0, show_default=True, help="Loader processes for --data.")
@click.option("--peak-tflops", type=float, default=None,
              help="The device's dense bf16 peak for MFU (known GPUs: looked up by name).")
@click.option("--json", "json_out", type=click.Path(), default=None, help="Write the bench record here.")
def bench(method, variant, protocol, recipe, device, amp, compile_, channels_last, batch, frames, test_frames,
          infer_batch, steps, warmup, data, workers, peak_tflops, json_out):
    """Measure training and inference throughput, latency, memory, parameters and FLOPs."""
    from .bench import measure
    from .io import write_json_atomic
    from .training.recipe import resolve_recipe

    m = _plugins().method(method)
    rec = resolve_recipe(m, recipe or protocol)
    pk = None
    if batch:
        try:
            pk = tuple(int(x) for x in batch.split(","))
            assert len(pk) == 2
        except (ValueError, AssertionError):
            raise GaitbenchError(f"--batch expects P,K (two integers), got {batch!r}") from None
    store = None
    if data:  # a wrong path is reported before minutes of measuring, not after
        from .data.store import open_store

        store = open_store(data)
    record = measure(m, variant=variant, recipe=rec, device=device, amp=amp, compile=compile_,
                     channels_last=channels_last, train_batch=pk, frames=frames, test_frames=test_frames,
                     infer_batch=infer_batch, steps=steps, warmup=warmup, peak=peak_tflops)
    t, i = record["train"], record["inference"]
    where = record["gpu"] or f"CPU ({record['threads']} threads)"
    click.echo(f"{method} [{record['variant']}] on {where}, amp {amp}{', compiled' if compile_ else ''}: "
               f"{record['params']:,} parameters, {record['gflops_per_sequence']:.2f} GFLOPs per {test_frames}-frame sequence")
    def mfu(section):
        return f" (MFU {section['mfu']:.1%} of {record['peak_bf16_tflops']:g})" if section["mfu"] is not None else ""

    click.echo(f"  training  {t['seq_per_s']:.1f} seq/s ({t['frames_per_s']:.0f} frames/s) at "
               f"{record['shapes']['train'][0]} x {record['shapes']['train'][1]} frames, {t['achieved_tflops']:.3f} TFLOP/s"
               + mfu(t))
    click.echo(f"  inference {i['seq_per_s']:.1f} seq/s in batches of {infer_batch}; latency {i['latency_s'] * 1000:.1f} ms "
               f"for one sequence; {i['achieved_tflops']:.3f} TFLOP/s" + mfu(i))
    if store is not None:
        from .bench import measure_loader

        P, K = pk or (rec.sampler.P, rec.sampler.K)
        s = rec.sampler
        loader = measure_loader(store, P=P, K=K, frames=frames or s.frames, order=s.order, skip=s.skip,
                                min_frames=s.min_frames, workers=workers, steps=steps, warmup=warmup)
        loader["headroom"] = loader["seq_per_s"] / t["seq_per_s"]
        record["loader"] = loader
        click.echo(f"  loader    {loader['seq_per_s']:.1f} seq/s ({loader['frames_per_s']:.0f} frames/s) with "
                   f"{workers} worker(s) from {loader['store']}: {loader['headroom']:.2f}x the training step"
                   + ("" if loader["headroom"] >= 1 else " -- the device would wait on the loader; add --workers"))
    if json_out:
        write_json_atomic(json_out, record)


@cli.command()
@click.argument("run_dir", type=click.Path())
@click.option("--out", type=click.Path(), default=None, help="HTML file (default RUN_DIR/report.html).")
@click.option("--png", is_flag=True, help="Embed PNG images instead of SVG.")
@click.option("--ranklists", type=click.IntRange(min=1), default=None, metavar="K",
              help="Also show the top-K gallery of a few probes (from RUN_DIR/embeddings.npz), hits marked, "
                   "with silhouettes when the run's dataset is at hand.")
@click.option("--ranklist-probes", type=click.IntRange(min=1), default=6, show_default=True,
              help="How many probes --ranklists shows (spread over the probe sets).")
def report(run_dir, out, png, ranklists, ranklist_probes):
    """Write one self-contained HTML report of a run (tables and plots inline, no network)."""
    from .results.report import write_report

    protocol = None
    if ranklists:
        from .protocols import resolve_protocol
        from .results.record import read_run

        protocol = resolve_protocol(read_run(Path(run_dir)).protocol, _plugins().protocols())
    path = write_report(Path(run_dir), Path(out) if out else None, image_format="png" if png else "svg",
                        ranklists=ranklists or 0, protocol=protocol, probes=ranklist_probes)
    click.echo(f"wrote {path}")


@cli.group()
def data():
    """Dataset tools."""


@data.command("synth")
@click.option("--layout", default="casiab", show_default=True,
              help="Dataset layout: casiab, oumvlp, grew, gait3d, hid.")
@click.option("--out", required=True, type=click.Path(), help="Folder for the packed store.")
@click.option("--subjects", type=int, default=None, help="Number of subjects (default: the layout's).")
@click.option("--frames", type=int, default=None, help="Mean frames per sequence (default: the layout's; --full: 80).")
@click.option("--full", is_flag=True, help="Full-length sequences (every 25-fps frame, about 3 s).")
@click.option("--height", type=int, default=64, show_default=True, help="Frame height: 64 (64x44) or 128 (128x88).")
@click.option("--distractors", type=int, default=0, show_default=True, help="GREW: gallery-only distractor subjects.")
@click.option("--test-subjects", type=int, default=None,
              help="gait3d, grew: identities on the test side (default: the layout's, or its share of --subjects).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--pkl-tree", type=click.Path(), default=None,
              help="Also write the dataset as an OpenGait pkl tree here (64x64 frames, as OpenGait's own).")
@click.option("--workers", type=int, default=None, help="Processes (default: all cores).")
@click.option("--force", is_flag=True, help="Replace an earlier synthetic dataset in --out (once the new one is "
                                            "complete); a folder holding anything else is never touched.")
def data_synth(layout, out, subjects, frames, full, height, distractors, test_subjects, seed, pkl_tree, workers,
               force):
    """Render a synthetic dataset of LAYOUT into a packed store."""
    from dataclasses import replace

    from .data.synthetic import LAYOUTS, SynthSpec, generate
    from .errors import did_you_mean

    if layout not in LAYOUTS:
        raise GaitbenchError(did_you_mean(layout, LAYOUTS, "layout"))
    spec = SynthSpec(layout=layout, seed=seed, subjects=subjects, test_subjects=test_subjects, height=height,
                     distractors=distractors)
    if full:
        spec = replace(spec, frames=80, frame_step=1.0)
    if frames:
        spec = replace(spec, frames=frames)
    store = generate(spec, out, workers=workers, force=force)
    size = (store.root / "frames.npy").stat().st_size / 2**20
    click.echo(f"wrote {len(store)} SYNTHETIC {layout} sequences ({store.index['length'].sum()} frames, "
               f"{size:.0f} MiB) to {out}")
    if pkl_tree:
        from .data.export import export_pkl_tree

        export_pkl_tree(store, pkl_tree, progress=True)
        click.echo(f"wrote the OpenGait pkl tree to {pkl_tree}")


@data.command("pretreat")
@click.argument("src", type=click.Path())
@click.argument("dest", type=click.Path())
@click.option("--dataset", required=True, help="Raw layout: casiab, oumvlp, gait3d, grew or hid.")
@click.option("--img-size", type=int, default=64, show_default=True, help="64, or 128 for Gait3D's high-resolution variant.")
@click.option("--workers", type=int, default=None, help="Processes (default: all cores).")
@click.option("--strict", is_flag=True, help="Stop at the first unreadable PNG instead of skipping it.")
def data_pretreat(src, dest, dataset, img_size, workers, strict):
    """The standard GaitSet/OpenGait pretreatment of raw silhouette PNGs into an OpenGait pkl tree.
    Resumable: a rerun skips finished sequences."""
    from .data.pretreat import pretreat_tree

    s = pretreat_tree(src, dest, dataset, img_size=img_size, workers=workers, strict=strict)
    click.echo(f"{s.sequences} sequences: {s.written} written, {s.skipped_existing} already done, {s.empty} empty "
               f"(not written), {s.short} shorter than 5 frames, {s.errors} errors; frames kept {s.frames_kept} of "
               f"{s.frames_in}. Log: {s.log}")
    for path in s.unreadable[:5]:
        click.echo(f"WARNING: unreadable frame skipped: {path}", err=True)
    for msg in s.failed[:5]:
        click.echo(f"WARNING: {msg}", err=True)


@data.command("pack")
@click.argument("src", type=click.Path())
@click.argument("dest", type=click.Path())
@click.option("--strict", is_flag=True, help="Stop at the first unreadable sequence instead of skipping it.")
@click.option("--force", is_flag=True, help="Replace an earlier packed store in DEST (once the new one is complete); "
                                            "a folder holding anything else is never touched.")
def data_pack(src, dest, strict, force):
    """Pack any readable dataset (pkl tree, PNG tree, packed store) into one memory-mapped store."""
    from .data.pack import pack_store

    summary = pack_store(src, dest, strict=strict, force=force)
    click.echo(f"packed {summary.sequences} sequences ({summary.frames} frames) into {dest}")
    if summary.skipped:
        click.echo(f"WARNING: {len(summary.skipped)} unreadable sequences left out, e.g. "
                   f"{summary.skipped[0]['problem']}", err=True)


@data.command("check")
@click.argument("root", type=click.Path())
@click.option("--protocol", "-p", required=True, help="Protocol name or file.")
@click.option("--partition", type=click.Path(), default=None, help="OpenGait-style partition JSON.")
@click.option("--json", "json_out", type=click.Path(), default=None, help="Write the findings as JSON here.")
@click.option("--quick", is_flag=True, help="Check the index only, without reading the frames.")
def data_check(root, protocol, partition, json_out, quick):
    """Check the dataset at ROOT against PROTOCOL without changing anything; exits 1 when the
    protocol cannot run as specified."""
    from dataclasses import asdict

    from .data.check import check_dataset, format_report
    from .data.store import open_store
    from .io import write_json_atomic
    from .protocols import resolve_protocol, resolve_split

    proto = resolve_protocol(protocol, _plugins().protocols())
    store = open_store(root)
    proto = resolve_split(proto, store, partition)
    report = check_dataset(store, proto, read_frames=not quick, progress=True)
    click.echo(format_report(report))
    if json_out:
        write_json_atomic(json_out, {**asdict(report), "ok": report.ok})
    if not report.ok:
        sys.exit(1)


@data.command("clean-cache")
@click.option("--dry-run", is_flag=True, help="List what would be removed, remove nothing.")
def data_clean_cache(dry_run):
    """Remove the temporaries that killed writers left in the cache (a synthetic dataset whose
    generation was interrupted); those of a process that still runs are kept."""
    from .data.synthetic import cache_dir
    from .io import remove_stale_temporaries, stale_temporaries

    root = cache_dir()
    folders = [root, *sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))] \
        if root.is_dir() else []
    total = 0
    for folder in folders:
        found = ([(p, None) for p in stale_temporaries(folder)] if dry_run else remove_stale_temporaries(folder))
        for path, size in found:
            total += size or 0
            click.echo(f"{'would remove' if dry_run else 'removed'} {path}"
                       + (f" ({size / 2**20:.1f} MiB)" if size is not None else ""))
    if not dry_run:
        click.echo(f"freed {total / 2**20:.1f} MiB in {root}")


def _wants_determinism(argv: list[str]) -> bool:
    if "--deterministic" in argv:
        return True
    if "--resume" in argv and "train" in argv:  # `train --resume DIR` uses the run's saved settings
        i = argv.index("--resume")
        if i + 1 < len(argv):
            try:
                return bool(json.loads((Path(argv[i + 1]) / "run_settings.json").read_text()).get("deterministic"))
            except (OSError, ValueError):
                return False
    return False


def main(argv=None):
    """Console entry point: loads plugin commands, then runs the click group."""
    import os

    if _wants_determinism(list(sys.argv[1:] if argv is None else argv)):
        # MKL picks kernels by memory alignment, which varies between processes: its strict
        # reproducibility mode must be chosen before torch loads it.
        os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")
    try:
        _plugins().add_commands(cli)
    except GaitbenchError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    return cli.main(args=argv, prog_name="gaitbench")


if __name__ == "__main__":  # pragma: no cover
    main()
