"""What a long run does about faults it can survive: loss spikes (`spike`: rewind to an earlier
checkpoint and skip the data that caused them) and hung or dead ranks (`watchdog`: dump every
rank's stacks and exit non-zero for the scheduler to requeue). `config` is the `fault:` section."""
