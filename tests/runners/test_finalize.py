"""``sweep finalize`` end to end: a cheap search, then its best trained again at the final
fidelity with several seeds, resumed, crash-retried, reported and exported.

Everything is read back through Optuna's and MLflow's own clients and the CLI's output.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
import yaml
from cli_runs import load, runs, start, sweep, wait_for_trial_with_run, write_space
from optuna.trial import TrialState

from sweep.search.best import choose_model
from sweep.search.final import pair_of
from sweep.search.storage import open_storage, study_names
from sweep.track.ui import study_links

FIDELITY = {
    "search": {"epochs": 1, "image_size": 12, "train_fraction": 0.5},
    "final": {"epochs": 2, "image_size": 16, "seeds": 2},
}


def _space(tmp: Path, study: str, data: Path, final_epochs: int = 2) -> Path:
    path = write_space(tmp, study, data, epochs=2)
    document = yaml.safe_load(path.read_text())
    document["fidelity"] = {**FIDELITY, "final": {**FIDELITY["final"], "epochs": final_epochs}}
    path.write_text(yaml.safe_dump(document))
    return path


def _searched_study(searched: dict, study: str, final_epochs: int) -> Path:
    """A 2-trial search of a study of its own in the shared home; the home."""
    home = searched["home"]
    space = _space(searched["tmp"], study, searched["data"], final_epochs=final_epochs)
    run = sweep(home, "run", "--space", str(space), "--trials", "2", "--no-progress")
    assert run.returncode == 0, run.stderr
    return home


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory, food11_dir: Path) -> dict:
    """A 3-trial search at proxy fidelity, then `sweep finalize --top 2` (2 seeds each)."""
    tmp = tmp_path_factory.mktemp("finalize")
    home = tmp / "home"
    space = _space(tmp, "fin", food11_dir)
    run = sweep(home, "run", "--space", str(space), "--trials", "3", "--no-progress")
    assert run.returncode == 0, run.stderr
    soft_after_search = sorted((home / "cache").glob("soft-labels-*.npy"))
    before, _ = choose_model("fin", None, home)
    final = sweep(home, "finalize", "--study", "fin", "--top", "2", "--no-progress")
    assert final.returncode == 0, final.stderr
    return {
        "home": home,
        "tmp": tmp,
        "data": food11_dir,
        "final": final,
        "soft_after_search": soft_after_search,
        "before": before,
    }


def _final_runs(home: Path) -> tuple[object, list, list]:
    client, found = runs(home, "fin")
    final = [r for r in found if r.data.tags.get("stage") == "final"]
    search = [r for r in found if r.data.tags.get("stage") == "search"]
    return client, final, search


def test_finalize_trains_each_chosen_trial_once_per_seed_under_the_search_parent(
    searched: dict,
) -> None:
    home = searched["home"]
    study = load(home, "fin.final")
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    pairs = sorted(pair_of(t) for t in trials)
    sources = sorted({source for source, _ in pairs})
    assert len(sources) == 2 and pairs == [(s, seed) for s in sources for seed in (0, 1)]

    client, final, search = _final_runs(home)
    parent = load(home, "fin").user_attrs["mlflow_parent_run_id"]
    assert len(final) == 4 and len(search) == 3
    assert all(r.data.tags["mlflow.parentRunId"] == parent for r in final + search)
    names = sorted(r.info.run_name for r in final)
    assert names == sorted(f"final-{s:04d}-seed{seed}" for s, seed in pairs)
    assert all(r.info.status == "FINISHED" for r in final)
    for r in final:  # per-epoch curves at the final fidelity, one point an epoch
        assert [m.step for m in client.get_metric_history(r.info.run_id, "val_acc")] == [0, 1]
    out = searched["final"].stdout
    assert "study fin.final: 2 architectures x 2 seeds at 2 epochs at 16 px" in out
    assert out.count(" -> final ") == 2


def test_search_and_final_runs_train_at_their_own_fidelity(searched: dict) -> None:
    client, final, search = _final_runs(searched["home"])

    def config(run) -> dict:
        path = client.download_artifacts(run.info.run_id, "config.yaml", str(searched["tmp"]))
        return yaml.safe_load(Path(path).read_text())["trial_config"]

    proxy, full = config(search[0]), config(final[0])
    assert (proxy["train"]["epochs"], proxy["dataset"]["image_size"]) == (1, 12)
    assert proxy["dataset"]["train_fraction"] == 0.5
    assert (full["train"]["epochs"], full["dataset"]["image_size"]) == (2, 16)
    assert full["dataset"]["train_fraction"] == 1.0
    seeds = {int(r.data.tags["seed"]): r.data.params["train.seed"] for r in final}
    assert seeds == {0: "0", 1: "1"}


def test_soft_labels_and_teacher_are_made_again_at_the_final_size(searched: dict) -> None:
    home = searched["home"]
    assert len(searched["soft_after_search"]) == 1
    soft = sorted((home / "cache").glob("soft-labels-*.npy"))
    # One set per (image size, seed): the search's (12 px, seed 0) is not reused at 16 px.
    assert len(soft) == 3 and set(searched["soft_after_search"]) < set(soft)
    assert len(list((home / "teachers").glob("resnet18-*.ckpt"))) == 2


def test_status_and_the_parent_run_say_which_stage_each_number_is_from(searched: dict) -> None:
    home = searched["home"]
    status = sweep(home, "status", "--study", "fin")
    assert status.returncode == 0, status.stderr
    assert "stage search: 1 epochs at 12 px on 50% of the training images" in status.stdout
    assert "stage final: 2 epochs at 16 px; proxy val_acc is the search" in status.stdout
    assert "sweep export takes trial" in status.stdout

    client, _ = runs(home, "fin")
    parent = client.get_run(load(home, "fin").user_attrs["mlflow_parent_run_id"])
    note = parent.data.tags["mlflow.note.content"]
    assert note.index("**Pareto front**") < note.index("### Final stage: best mean")
    assert "| trial | proxy val_acc | final mean | sd | seeds |" in note
    assert {"final_val_acc_mean", "final_val_acc_std", "best_val_acc"} <= set(parent.data.metrics)
    assert parent.info.status == "FINISHED"


def test_the_final_stage_has_a_view_of_its_own_grouped_by_architecture(searched: dict) -> None:
    home = searched["home"]
    client, _ = runs(home, "fin")
    experiment = client.get_experiment_by_name("fin")
    view = json.loads(experiment.tags["mlflow.sharedViewState.sweep-final"])
    assert view["groupBy"]["groupByKeys"] == [{"mode": "tag", "groupByData": "source_trial"}]
    # Its filter, as MLflow's own search reads it: the final study's complete trainings.
    shown = client.search_runs([experiment.experiment_id], view["searchFilter"])
    final = load(home, "fin.final").get_trials(states=(TrialState.COMPLETE,))
    assert sorted(r.info.run_id for r in shown) == sorted(
        t.user_attrs["mlflow_run_id"] for t in final
    )
    # ... and the search's view none of them.
    search = json.loads(experiment.tags["mlflow.sharedViewState.sweep"])
    searched_runs = client.search_runs([experiment.experiment_id], search["searchFilter"])
    assert {r.data.tags["stage"] for r in searched_runs} == {"search"}
    links = dict(study_links(f"sqlite:///{home / 'mlflow.db'}", "http://ui"))["fin"]
    assert set(links) == {"sweep", "sweep-front", "sweep-final"}  # sweep ui prints all three


def test_a_rerun_trains_nothing_twice_and_more_seeds_train_only_the_new_ones(
    searched: dict,
) -> None:
    home = searched["home"]
    again = sweep(home, "finalize", "--study", "fin", "--top", "2", "--no-progress")
    assert again.returncode == 0, again.stderr
    assert len(load(home, "fin.final").trials) == 4
    more = sweep(home, "finalize", "--study", "fin", "--top", "2", "--seeds", "3", "--no-progress")
    assert more.returncode == 0, more.stderr
    trials = load(home, "fin.final").get_trials(deepcopy=False)
    assert len(trials) == 6 and all(t.state == TrialState.COMPLETE for t in trials)
    new = sorted(pair_of(t) for t in trials[4:])
    assert [seed for _, seed in new] == [2, 2]
    assert "(3/3 seeds)" in more.stdout


def test_export_takes_the_best_mean_and_says_which_seed_and_why(searched: dict) -> None:
    home = searched["home"]
    assert searched["before"].stage == "search"  # before finalize: the search's best
    assert "sweep finalize" in searched["before"].reason
    out = searched["tmp"] / "best"
    export = sweep(home, "export", "--study", "fin", "--out", str(out))
    assert export.returncode == 0, export.stderr
    report = json.loads((out / "export.json").read_text())
    chosen, _ = choose_model("fin", None, home)
    assert report["stage"] == "final" and report["source_trial"] == chosen.source
    assert report["seed"] == chosen.facts["seed"]
    assert report["run_id"] == chosen.trial.run_id
    assert report["reloaded_val_acc"] == pytest.approx(report["logged_val_acc"], abs=1e-9)
    study = load(home, "fin.final")
    source = report["source_trial"]
    seeds = [t.user_attrs["val_acc"] for t in study.trials if pair_of(t)[0] == source]
    assert report["logged_val_acc"] == max(seeds)  # its best seed
    assert report["final_val_acc_mean"] == pytest.approx(sum(seeds) / len(seeds))
    assert f"took trial {source} (final stage), seed {report['seed']}" in export.stdout


def test_a_worker_killed_mid_training_is_retried_with_the_same_source_and_seed(
    searched: dict,
) -> None:
    home = _searched_study(searched, "killfin", final_epochs=8)
    args = ("finalize", "--study", "killfin", "--top", "1", "--workers", "2", "--no-progress")
    pool = start(home, *args)
    held = wait_for_trial_with_run(home, "killfin.final", pool)
    os.kill(held.pid, signal.SIGKILL)
    out, err = pool.communicate(timeout=600)
    assert pool.returncode == 0, err
    assert f"trial {held.number} failed and queued again" in err
    study = load(home, "killfin.final")
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    killed = trials[held.number]
    assert killed.state == TrialState.FAIL
    retry = [t for t in trials.values() if t.user_attrs.get("retry_of") == held.number]
    assert len(retry) == 1 and pair_of(retry[0]) == pair_of(killed)
    complete = sorted(pair_of(t) for t in trials.values() if t.state == TrialState.COMPLETE)
    assert [seed for _, seed in complete] == [0, 1]  # each seed once
    client, found = runs(home, "killfin")
    failed = [r for r in found if r.info.run_id == held.run_id][0]
    assert failed.info.status == "FAILED" and failed.data.tags["stage"] == "final"
    assert not [r for r in found if r.info.status == "RUNNING"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--study", "nope"), "--study: no study named 'nope'"),
        (("--study", "fin", "--seeds", "0"), "--seeds: must be at least 1"),
        (("--study", "fin", "--top", "0"), "--top: must be at least 1"),
        (
            ("--study", "fin", "--set", "fidelity.final.epochs=0"),
            "study fin: fidelity.final.epochs: must be >= 1",
        ),
    ],
)
def test_bad_input_is_one_line_and_queues_nothing(
    searched: dict, args: tuple[str, ...], message: str
) -> None:
    home = searched["home"]
    before = len(load(home, "fin.final").trials)
    journal = (home / "optuna.journal").read_bytes()
    done = sweep(home, "finalize", *args, "--no-progress")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"sweep: error: {message}"), lines
    assert (home / "optuna.journal").read_bytes() == journal
    assert len(load(home, "fin.final").trials) == before


# When SIGINT lands in `sweep finalize`: "start" after the process starts (imports, checks,
# the final study's queue), "training" after a final training has its run (seconds after).
FINALIZE_MOMENTS = [("start", 2.0), ("start", 6.0), ("training", 0.0), ("training", 1.0)]


def test_ctrl_c_at_any_moment_of_finalize_is_one_line_and_the_rerun_completes(
    searched: dict,
) -> None:
    home = _searched_study(searched, "stopfin", final_epochs=30)
    args = ("finalize", "--study", "stopfin", "--top", "1", "--seeds", "2", "--no-progress")
    for event, after in FINALIZE_MOMENTS:
        final = start(home, *args)
        if event == "training":
            wait_for_trial_with_run(home, "stopfin.final", final)
        time.sleep(after)
        final.send_signal(signal.SIGINT)
        _, err = final.communicate(timeout=120)
        lines = [line for line in err.splitlines() if line.strip()]
        assert final.returncode == 130, (event, after, err)
        assert lines[-1].startswith("sweep: interrupted"), (event, after, err)
        assert "Traceback" not in err and "Exception ignored" not in err, (event, after, err)
        # Nothing left RUNNING, in Optuna or MLflow.
        if "stopfin.final" in study_names(open_storage(str(home / "optuna.journal"))):
            study = load(home, "stopfin.final")
            assert not [t for t in study.trials if t.state == TrialState.RUNNING], (event, after)
        _, found = runs(home, "stopfin")
        assert not [r for r in found if r.info.status == "RUNNING"], (event, after)
    # The trainings the Ctrl-Cs stopped ended FAILED; the same command again finishes the
    # plan: each seed trained once, complete.
    assert [t for t in load(home, "stopfin.final").trials if t.state == TrialState.FAIL]
    done = sweep(home, *args)
    assert done.returncode == 0, done.stderr
    complete = [t for t in load(home, "stopfin.final").trials if t.state == TrialState.COMPLETE]
    assert sorted(pair_of(t)[1] for t in complete) == [0, 1]
