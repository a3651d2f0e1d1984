"""All of the CLI's progress drawing: rich bars on a terminal, plain lines otherwise (CI logs, nohup, pipes). Training
epochs and batches (compress.train.Reporter), tasks and notes (edgecnn.progress.Progress: export, the clean head),
and one bar per device in `edgecnn bench`."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from .console import err


def _epoch_line(record: dict) -> str:
    return (f"epoch {record['epoch']}: loss {record['train_loss']:.4f} train {record['train_acc']:.2%} "
            f"val {record['val_acc']:.2%} (loss {record['val_loss']:.4f}) lr {record['lr']:.2e} "
            f"{record['images_per_s']:.0f} img/s {record['seconds']:.0f}s")


class LogReporter:  # a compress.train.Reporter (not subclassed: importing it would load torch at start-up)
    def __init__(self) -> None:
        self.last_line = 0.0

    def start(self, run: Path, epochs: int, steps: int, first_epoch: int) -> None:
        resumed = f", resuming after epoch {first_epoch}" if first_epoch else ""
        err.print(f"run {run}: {epochs} epochs x {steps} steps{resumed}", markup=False, highlight=False)

    def batch(self, epoch: int, step: int, loss: float, acc: float, images_per_s: float) -> None:
        if time.monotonic() - self.last_line > 60:  # a sign of life every minute in logs
            self.last_line = time.monotonic()
            err.print(f"epoch {epoch + 1} step {step + 1}: loss {loss:.4f} acc {acc:.2%} {images_per_s:.0f} img/s",
                      highlight=False)

    def epoch(self, record: dict) -> None:
        err.print(_epoch_line(record), highlight=False)

    def finish(self, result: dict) -> None:
        err.print(f"test accuracy {result['test_acc']:.2%}, top-5 {result['test_top5']:.2%} "
                  f"(best-val epoch {result['best_epoch']}), "
                  f"last epoch {result['test_acc_last']:.2%}, {result['test_images']} test images", highlight=False)


class RichReporter(LogReporter):
    def __init__(self) -> None:
        super().__init__()
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[stats]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                                 console=err)

    def start(self, run: Path, epochs: int, steps: int, first_epoch: int) -> None:
        super().start(run, epochs, steps, first_epoch)
        self.progress.start()
        self.epochs = self.progress.add_task("epochs", total=epochs, completed=first_epoch, stats="")
        self.steps = self.progress.add_task("batches", total=steps, stats="")

    def batch(self, epoch: int, step: int, loss: float, acc: float, images_per_s: float) -> None:
        self.progress.update(self.steps, completed=step + 1, description=f"epoch {epoch + 1}",
                             stats=f"loss {loss:.3f} acc {acc:.1%} {images_per_s:.0f} img/s")

    def epoch(self, record: dict) -> None:
        self.progress.console.print(_epoch_line(record), highlight=False)
        self.progress.update(self.epochs, completed=record["epoch"],
                             stats=f"val {record['val_acc']:.2%}")

    def finish(self, result: dict) -> None:
        self.progress.stop()
        super().finish(result)


def reporter() -> LogReporter:
    return RichReporter() if err.is_terminal else LogReporter()


class RichProgress:
    """edgecnn.progress.Progress drawn as rich bars on stderr (plain lines when stderr is not a terminal)."""

    @contextlib.contextmanager
    def task(self, description: str, total: int):
        if not err.is_terminal:
            err.print(f"{description} ({total} images)", markup=False, highlight=False)
            yield lambda n: None
            return
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=err, transient=True) as bars:
            task = bars.add_task(description, total=total)
            yield lambda n: bars.advance(task, n)

    def note(self, message: str) -> None:
        err.print(message, markup=False, highlight=False)


@contextlib.contextmanager
def bench_progress(profiles, manifest, plan):
    """tick(device, activity, units done): one rich bar per device on a terminal, plain lines otherwise."""
    from edgecnn.bench.harness import steps

    if not err.is_terminal:
        yield lambda device, text, done: err.print(f"{device}: {text}", highlight=False, markup=False)
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[now]}"),
                  TimeElapsedColumn(), console=err) as progress:
        tasks = {p.name: progress.add_task(p.name, total=steps(p, manifest, plan), now="") for p in profiles}
        yield lambda device, text, done: progress.update(tasks[device], completed=done, now=text)


