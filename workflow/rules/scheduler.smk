# Snakemake 9.10 to at least 9.15 (snakemake/snakemake#3913, open): when exactly one job is ready,
# the scheduler starts it without booking its cores, then frees them when it ends, so the free
# cores grow past --cores (demo -> extract ran three 1-thread jobs on --cores 2). Measured on a
# 1 -> 6 job workflow with --cores 2: at most 3 jobs at once with the greedy scheduler, the ILP
# scheduler, -j 2 and a resource cap (resources: slots=1 with --resources slots=2) alike; 2 with
# snakemake 9.9.0 and with this patch. The patch books the lone job's resources as the scheduler
# does for several; it is applied only where the scheduler still has the faulty early return, so
# a fixed snakemake (or 8.x / <= 9.9, which never had it) runs unchanged.
# tests/test_scheduler.py checks it.


def book_lone_jobs():
    import inspect
    import re

    try:
        from snakemake.scheduling.job_scheduler import JobScheduler
    except ImportError:  # snakemake < 9.10: no such module, no such bug
        return False
    if getattr(JobScheduler, "_dsr_books_lone_jobs", False):
        return True
    source = inspect.getsource(JobScheduler.job_selector)
    faulty = re.search(
        r"if len\(jobs\) == 1:\s*return self\.job_selector_greedy\(", source
    )
    if not faulty:
        return False
    init = JobScheduler.__init__

    def __init__(self, *args, **kwargs):
        init(self, *args, **kwargs)
        select = self.job_selector_greedy

        def job_selector_greedy(jobs, *rest):
            selected = select(jobs, *rest)
            # the early return for one job books nothing; several are booked by the caller
            if len(jobs) == 1:
                self.update_available_resources(selected)
            return selected

        self.job_selector_greedy = job_selector_greedy

    JobScheduler.__init__ = __init__
    JobScheduler._dsr_books_lone_jobs = True
    return True


BOOKS_LONE_JOBS = book_lone_jobs()
