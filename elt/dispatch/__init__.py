"""Running elt's tasks on Dask clusters: local worker processes, a running scheduler, SLURM jobs."""

# set (to "1") by the CLI when it quieted Dask's logging for the terminal (DASK_LOGGING__DISTRIBUTED=error);
# SLURM worker jobs then drop both again: their logs are files, where Dask's warnings belong
QUIET_DASK = "ELT_QUIET_DASK"
