"""The run's log writers on a real full filesystem (a tiny tmpfs, as root; else skipped): each
warns once and never raises, so a full disk cannot end training through its logs."""

import logging


from pretrain.training.run_logs import MetricsCSVLogger, TensorBoardRunLogger, plot_loss, read_metrics
from tests.pretrain.test_disk_full import tmpfs


def _fill(directory):
    with open(directory / "ballast", "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass


def _warnings(caplog, what):
    return [r for r in caplog.records if r.levelno == logging.WARNING and what in r.getMessage()]


def test_metrics_csv_on_a_full_disk_warns_once_and_keeps_the_rows_it_could_write(tmp_path, caplog):
    with tmpfs(tmp_path / "run", 64) as disk:
        logger = MetricsCSVLogger(disk)
        logger.log_metrics({"loss": 5.0, "lr": 1e-3}, step=1)
        _fill(disk)
        for step in range(2, 400):  # far past the file's last allocated page
            logger.log_metrics({"loss": 5.0, "lr": 1e-3}, step=step)
        rows = read_metrics(disk / "metrics.csv")
        assert rows[0]["step"] == "1" and 1 <= len(rows) < 399
        [warning] = _warnings(caplog, "metrics.csv: a write failed")
        assert "No space left on device" in warning.getMessage()


def test_tensorboard_on_a_full_disk_warns_once(tmp_path, caplog):
    with tmpfs(tmp_path / "run", 64) as disk:
        logger = TensorBoardRunLogger(disk)
        logger.log_metrics({"loss": 5.0}, step=1)
        _fill(disk)
        for step in range(2, 2000):
            logger.log_metrics({"loss": 5.0, "lr": 1e-3, "grad_norm": 1.0}, step=step)
            if step % 100 == 0:
                logger.save()
        logger.finalize("success")
        assert len(_warnings(caplog, "tensorboard: a write failed")) == 1


def test_the_loss_plot_on_a_full_disk_warns_and_returns_none(tmp_path, caplog):
    with tmpfs(tmp_path / "run", 64) as disk:
        logger = MetricsCSVLogger(disk)
        for step in range(1, 20):
            logger.log_metrics({"loss": 5.0 - step / 10}, step=step)
        _fill(disk)
        assert plot_loss(disk) is None
        assert len(_warnings(caplog, "loss.png: a write failed")) == 1
        assert sorted(p.name for p in disk.iterdir()) == ["ballast", "metrics.csv"]  # no partial plot
