"""
Worker processes on one host (``workers: N | auto``): a supervisor (the
process twistd runs) binds every listener once and starts N workers that
each accept on those sockets and serve the same `Generation` stack as a
single process.  See docs/operations.md, "Worker processes".

* `settings`: the ``workers`` key;
* `sockets`: the listening sockets, bound by the supervisor, adopted by workers;
* `control`: the AMP commands between supervisor and workers;
* `supervisor`, `slot`: start, restart, reload (two phases) and drain;
* `worker`: the worker process's entry point;
* `hostadmin`, `merge`: the admin listener, answering for the whole set;
* `limits`: the host-wide memory rate-limit backend.
"""
