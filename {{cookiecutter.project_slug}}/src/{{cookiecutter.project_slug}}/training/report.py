"""What a run says about its progress: the resume point, each epoch's record and line."""


def resume_point(state: dict) -> tuple[str, int]:
    """The epoch a checkpoint resumes in ("3", or "3 after 40 batches") and its step."""
    epoch = f"{state['epoch'] + 1}"
    if state["batches_done"]:
        epoch += f" after {state['batches_done']} batches"
    return epoch, state["global_step"]


def epoch_record(
    epoch: int, step: int, lr: float, train_stats: dict, val_stats: dict, selected_stats: dict
) -> dict:
    """One line of metrics.jsonl: the EMA's validation scores, when on, as `ema_val_*`."""
    record = {"epoch": epoch, "step": step}
    record.update(train_stats)
    record.update({key: value for key, value in val_stats.items() if key.startswith("val_")})
    if selected_stats is not val_stats:
        record.update(
            {f"ema_{key}": value for key, value in selected_stats.items() if key.startswith("val_")}
        )
    record["lr"] = lr
    return record


def epoch_line(record: dict, epochs: int, headline: str) -> str:
    """The epoch's training means, its validation loss and `headline` metric (the EMA's too,
    when on), the learning rate and the throughput."""
    shown = [key for key in record if key.startswith("train_")]
    shown += ["val_loss", headline, *([f"ema_{headline}"] if f"ema_{headline}" in record else [])]
    scores = " ".join(f"{key} {record[key]:.4f}" for key in shown)
    return (
        f"epoch {record['epoch']}/{epochs} {scores} lr {record['lr']:.2e} "
        f"{record['samples_per_second']:.0f} samples/s {record['epoch_seconds']:.1f}s"
    )
