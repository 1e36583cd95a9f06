"""The process: start-up order, embedded NATS, scheduler, command line, shutdown."""
