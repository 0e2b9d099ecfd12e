"""Many workers, one batch, on Ray: `seesr upscale --devices 0,1,2,3` (a private Ray on this
machine) and `seesr upscale --ray auto|HOST:PORT` (a running cluster).

Ray does what we would otherwise write ourselves: it starts one worker process per GPU (or CPU
share), places them on the nodes, restarts a worker whose process or node died, and tracks the
nodes that join or leave. Our code is what Ray cannot know: `devices` (which workers the options
ask for), `nodes` (a setup task per node: the shared file system check and the weights prepared
once under a file lock), `worker` (an actor holding one pipeline, running `batch.run_one` on each
job), `dispatch` (the driver's loop: the next job to the next free worker, the job of a worker that
died to another, at most 3 tries), `run` (the pieces in order). Only `--devices` / `--ray` import
this package (and Ray).

Why Ray core actors and not Ray Data (`map_batches` over an actor pool), though Ray Data is made
for batch inference: measured on the prototypes of issue 12 (/work/proto/ray/FINDINGS.md), for
few, long, stateful jobs with per-step progress, graceful Ctrl-C and bounded retries it was
worse on each point that matters here:
- latency: a result reached the driver 0.5-1.1 s after its worker finished (Ray Data's executor
  polls) against 1-2 ms with our `ray.wait` loop; 16 jobs on 4 workers took 12.9-17.2 s against 9.3 s;
- retries: Ray Data retries a task whose worker died forever by default (an image that crashes its
  worker loops), and with bounded retries it silently drops that row; one exception in the
  per-row function aborts the whole dataset. We need "redo elsewhere, at most 3 tries, then
  report the image failed with a cause";
- a lost node: its job waited for the actor's restart and ran last after an 8.6 s stall (our
  loop redid it on the other node at once);
- Ctrl-C: Ray Data kills the running jobs mid-image; with actors, the running images stop at
  their next step and write nothing (35-75 ms after the signal in the prototype);
- silence and weight: Ray Data prints its own progress and an error line on every run, has a
  30-minute no-progress timeout that a large CPU image exceeds, bundles up to 200 blocks per call
  unless told otherwise, and needs `ray[data]` (pyarrow + pandas, +255 MB) where `ray` suffices.
"""
