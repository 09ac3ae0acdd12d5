"""`FaultConfig`: the `fault:` section of an `slm pretrain` recipe (both parts off by default).

::

    fault:
      step_timeout_s: 600      # no optimizer step finishes in this time: every rank writes its
                               # Python stacks to RUN_DIR/hang/rankN.txt and exits with status 1
      spike:                   # loss-spike rewinds (PaLM §5.1); omit or null = off
        window: 100            # steps of training loss the running mean and std are taken over
        zscore: 6.0            # a spike: loss > mean + zscore·std, once the window is full
        rewind_steps: 100      # reload the newest checkpoint at least this many steps back
        skip_batches: 200      # then skip this many steps' worth of data from that checkpoint on
        max_rewinds: 5         # one more spike after this many rewinds: the run stops, error

`validate()` checks the values alone; `pretrain.training.fault.spike` and
`pretrain.training.fault.watchdog` act on them.
"""

from __future__ import annotations

from dataclasses import dataclass

from pretrain.errors import PretrainError


@dataclass
class SpikeConfig:
    """Loss-spike detection and rewind; see the module docstring for each key."""

    window: int = 100
    zscore: float = 6.0
    rewind_steps: int = 100
    skip_batches: int = 200
    max_rewinds: int = 5

    def validate(self) -> "SpikeConfig":
        for key, low in (("window", 2), ("rewind_steps", 1), ("skip_batches", 0), ("max_rewinds", 0)):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise PretrainError(f"must be an integer ≥ {low}, got {value!r} (fault.spike.{key})")
        if isinstance(self.zscore, bool) or not isinstance(self.zscore, (int, float)) or not self.zscore > 0:
            raise PretrainError(f"must be > 0, got {self.zscore!r} (fault.spike.zscore)")
        return self


@dataclass
class FaultConfig:
    """What a run does about hung steps and loss spikes; see the module docstring."""

    step_timeout_s: float | None = None
    spike: SpikeConfig | None = None

    def validate(self) -> "FaultConfig":
        if isinstance(self.spike, dict):  # as a CLI link may deliver it
            self.spike = SpikeConfig(**self.spike)
        timeout = self.step_timeout_s
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                    or not timeout > 0):
            raise PretrainError(f"must be > 0 seconds (or null = off), got {timeout!r} (fault.step_timeout_s)")
        if self.spike is not None:
            self.spike.validate()
        return self
