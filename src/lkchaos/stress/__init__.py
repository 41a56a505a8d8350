"""Resource faults on a service: CPU and memory pressure, and disk filling (see ``actions``)."""
