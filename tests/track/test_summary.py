"""sweep.track.summary: what a study's runs say at a glance."""

from __future__ import annotations

from sweep.config import build_config
from sweep.track.summary import trial_note


def test_a_trial_note_reads_as_a_person_reads_it() -> None:
    cfg = build_config({"student.family": "ghostnet", "epochs": 6, "image_size": 32, "resize": 36})
    note = trial_note(
        cfg,
        45_202,
        1_946_698,
        val_acc=0.9749303621169917,
        best_epoch=4,
        epochs_run=6,
        stopped_early=False,
        seconds=4.6,
    )
    assert note == (
        "**ghostnet**, 45,202 parameters (14,798 under the 60,000 budget), 1,946,698 MACs "
        "at 32x32 px.\n\nBest **val_acc 0.9749** at epoch 5 of 6, in 5 s; seed 0. Settings "
        "in `config.yaml`, the layers in `model_summary.txt`.\n"
    )


def test_a_trial_stopped_early_says_when() -> None:
    cfg = build_config({"epochs": 20})
    note = trial_note(
        cfg, 21_994, 10, val_acc=0.75, best_epoch=2, epochs_run=4, stopped_early=True, seconds=3
    )
    assert "at epoch 3 of 20 (stopped early after 4)," in note
