"""`seesr download` and `seesr weights`: fetch every checkpoint ahead of time; where each is, verified?"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from seesr_cli.cli.app import app, print_json
from seesr_cli.cli.help import WEIGHTS_SIZE, Command
from seesr_cli.cli.options import (
    AcceptLocal,
    Device,
    Dtype,
    JsonOut,
    Quiet,
    Sd2Repo,
    Turbo,
    Weights,
)
from seesr_cli.cli.options import (
    accept_local_weights as accept_local_weights_now,
)
from seesr_cli.cli.progress import BatchProgress
from seesr_cli.cli.tables import table_console, weights_next_step, weights_row, weights_table

WEIGHTS_HELP = f"""Each checkpoint's source, local path, size and state; the device and dtype a run would use; what to do next.

Exit 1 when a part is missing or fails its checksum.

A run needs {WEIGHTS_SIZE} (SD2-base parts, the SeeSR UNet and ControlNet, DAPE.pth, RAM Swin-L and its
tag lists; --turbo adds SD-Turbo, 5.2 GB). `seesr download` (or the first run) fetches them from the
Hugging Face Hub into its cache (HF_HOME, HF_HUB_CACHE, or SEESR_CACHE) and checks each sha256 before
anything is unpickled. Offline (HF_HUB_OFFLINE=1) nothing is downloaded.

Weights downloaded by hand: --weights DIR (or SEESR_WEIGHTS=DIR), a folder in the official layout:
  DIR/stable-diffusion-2-base/   text_encoder/ tokenizer/ vae/ scheduler/ (diffusers folders)
  DIR/seesr/unet/                config.json, diffusion_pytorch_model.safetensors
  DIR/seesr/controlnet/          config.json, diffusion_pytorch_model.safetensors
  DIR/DAPE.pth                   from CSWRY/SeeSR
  DIR/ram_swin_large_14m.pth     from xinyu1205/recognize_anything_model
  DIR/ram_tag_list.txt, ram_tag_list_threshold.txt, sd-turbo/   optional (else from the Hub cache)
DAPE.pth and ram_swin_large_14m.pth must be the release files (sha256 checked); your own fine-tune:
--accept-local-weights (still loaded as tensors only, never as code).
Other Hub repos: --sd2-repo ORG/NAME, or a SEESR_SOURCES JSON file (repo_id, revision, sha256 per part)."""


@app.command(cls=Command)
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


@app.command("weights", cls=Command, help=WEIGHTS_HELP)
def weights_command(
    weights: Weights = None,
    accept_local_weights: AcceptLocal = False,
    turbo: Turbo = False,
    sd2_repo: Sd2Repo = None,
    verify: Annotated[bool, typer.Option("--verify", help="Hash every file now (slow for large files).")] = False,
    device: Device = "auto",
    dtype: Dtype = "auto",
    json_out: JsonOut = False,
) -> int:
    from seesr_cli.core.device import dtype_name, resolve_device, resolve_dtype
    from seesr_cli.weights import SOURCES, describe_weights, is_offline

    accept_local = accept_local_weights_now(accept_local_weights, weights)
    with BatchProgress(Console(stderr=True)) as view:
        rows = describe_weights(weights_dir=weights, turbo=turbo, sd2_repo=sd2_repo, verify=verify,
                                progress=view.weights_event, accept_local=accept_local)
    torch_device = resolve_device(device)
    run = {"device": str(torch_device), "dtype": dtype_name(resolve_dtype(dtype, torch_device))}
    next_step = weights_next_step(rows, {s.key: s.size_bytes or 0 for s in SOURCES}, offline=is_offline())
    if json_out:
        print_json({"weights": [weights_row(r) for r in rows], **run, "next": next_step})
    else:
        console = table_console()
        console.print(weights_table(rows))
        console.print(f"a run would use device {run['device']}, dtype {run['dtype']}", markup=False, highlight=False)
        console.print(next_step, markup=False, highlight=False)
    return 1 if any(r.state in ("missing", "sha256 mismatch") for r in rows) else 0


app.command("info", cls=Command, hidden=True, help="Alias of `seesr weights`.")(weights_command)
