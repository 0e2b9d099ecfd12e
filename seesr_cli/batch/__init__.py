"""A batch of images: which files (`discover`), where each result goes and its seed (`plan`),
running the jobs (`run`) and the work for one image (`job`)."""

from seesr_cli.batch.discover import InputFile, discover
from seesr_cli.batch.job import PipelineLoader, image_metadata, upscale_job, upscale_jobs
from seesr_cli.batch.plan import FAIL, RUN, SKIP, Job, OutputOptions, derive_seed, plan_batch, shard_jobs
from seesr_cli.batch.run import FAILED, OK, SKIPPED, BatchObserver, BatchReport, JobResult, WorkDone, run_jobs, run_one

__all__ = ["FAIL", "FAILED", "OK", "RUN", "SKIP", "SKIPPED", "BatchObserver", "BatchReport", "InputFile", "Job",
           "JobResult", "OutputOptions", "PipelineLoader", "WorkDone", "derive_seed", "discover", "image_metadata", "plan_batch",
           "run_jobs", "run_one", "shard_jobs", "upscale_job", "upscale_jobs"]
