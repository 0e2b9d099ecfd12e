"""`seesr download` and `seesr weights`: fetch every checkpoint ahead of time; where each is, verified?"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from seesr_cli.cli.app import app, print_json
from seesr_cli.cli.options import Device, Dtype, JsonOut, Quiet, Sd2Repo, Turbo, Weights
from seesr_cli.cli.progress import BatchProgress
from seesr_cli.cli.tables import table_console, weights_row, weights_table


@app.command()
def download(turbo: Turbo = False, sd2_repo: Sd2Repo = None, quiet: Quiet = False) -> int:
    """Fetch and verify every checkpoint ahead of time (into the Hugging Face cache)."""
    from seesr_cli.weights import download_all

    with BatchProgress(Console(stderr=True), quiet=quiet) as view:
        paths = download_all(turbo=turbo, sd2_repo=sd2_repo, progress=view.weights_event)
    for name in ("sd2", "unet", "controlnet", "dape", "turbo"):
        value = getattr(paths, name)
        if value is not None:
            typer.echo(f"{name}: {value}")
    return 0


@app.command("weights")
def weights_command(
    weights: Weights = None,
    turbo: Turbo = False,
    sd2_repo: Sd2Repo = None,
    verify: Annotated[bool, typer.Option("--verify", help="Hash every file now (slow for large files).")] = False,
    device: Device = "auto",
    dtype: Dtype = "auto",
    json_out: JsonOut = False,
) -> int:
    """Each checkpoint's source, local path, size and state; the device and dtype a run would use.

    Exit 1 when a part is missing or fails its checksum."""
    from seesr_cli.core.device import dtype_name, resolve_device, resolve_dtype
    from seesr_cli.weights import describe_weights

    with BatchProgress(Console(stderr=True)) as view:
        rows = describe_weights(weights_dir=weights, turbo=turbo, sd2_repo=sd2_repo, verify=verify,
                                progress=view.weights_event)
    torch_device = resolve_device(device)
    run = {"device": str(torch_device), "dtype": dtype_name(resolve_dtype(dtype, torch_device))}
    if json_out:
        print_json({"weights": [weights_row(r) for r in rows], **run})
    else:
        table_console().print(weights_table(rows))
        typer.echo(f"a run would use device {run['device']}, dtype {run['dtype']}")
    return 1 if any(r.state in ("missing", "sha256 mismatch") for r in rows) else 0


app.command("info", hidden=True, help="Alias of `seesr weights`.")(weights_command)
