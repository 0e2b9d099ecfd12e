"""Many processes, one batch: `seesr upscale --devices 0,1` and `accelerate launch -m seesr_cli upscale`.

`launch` starts one process per device; `team` joins the launch's process group and store;
`shared` runs this process's share of the batch and, in the main process, reports for all.
"""
