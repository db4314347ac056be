"""Scale-out on Ray (issue 14): the global-counter actor and experiment runs as Ray tasks.

Ray is an optional extra (`pip install 'equinox-sched[ray]'`); nothing outside this package
imports it, and this package imports it only inside functions that need it.
"""
