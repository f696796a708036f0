"""The only place a trial meets training: sample -> budget check -> train -> report.

An over-budget proposal is recorded and stopped within a second, never trained: the trial
gets the constraint ``params_over_budget`` (> 0) and ends PRUNED with ``state=infeasible``,
so TPE ranks it among infeasible trials by how far over it was and learns to avoid it,
while the median/hyperband pruners never see it (it has no intermediate values).
"""

from __future__ import annotations

import functools
import tempfile
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import optuna
import torch

from sweep import interrupts
from sweep.compress.artifact import RUN_WEIGHTS, StudentArtifact
from sweep.compress.plan import Plan, build_planned, check_schedule, plan_trial
from sweep.compress.stages import make_stages
from sweep.config import TrialConfig, flatten
from sweep.data.protocol import TrainData
from sweep.distill.distillers import make_distiller, trial_teacher
from sweep.models.budget import BudgetReport, count_macs, count_params, model_summary
from sweep.models.registry import create_student, validate_student_options
from sweep.models.weights import save_state_dict
from sweep.search.duplicates import earlier_with_same_settings, taken_trials
from sweep.search.final import trial_label
from sweep.search.optuna_internals import set_system_attr, trial_id
from sweep.search.space import SearchSpace
from sweep.teacher.assistant import ensure_assistant
from sweep.teacher.soft_labels import SoftLabels
from sweep.teacher.trial_data import study_soft_labels, trial_data, uses_cached_teacher
from sweep.track.summary import trial_note
from sweep.track.tracker import Tracker
from sweep.train import TrainResult, cpu_accuracy, resolve_device, train

CONSTRAINT = "params_over_budget"


class TrialProgress(Protocol):
    """What the objective tells a progress display."""

    def trial_started(
        self, number: int, epochs: int, family: str, params: int, label: str
    ) -> None: ...

    def batch_done(self, number: int, epoch: int, batch: int, batches: int) -> None: ...

    def epoch_done(self, number: int, epoch: int, metrics: dict[str, float]) -> None: ...


class TrialSource(Protocol):
    """Where a trial's settings come from: a sampler's proposal, or a queued final training
    (:class:`sweep.search.final.FinalTrials`)."""

    space: SearchSpace

    def config(self, trial: optuna.Trial) -> TrialConfig:
        """The trial's config (recording what it needs in the trial)."""
        ...

    def run_tags(self, trial: optuna.Trial) -> dict[str, str]:
        """Tags of the trial's MLflow run beyond the ones every trial run has."""
        ...

    def duplicate(self, trial: optuna.Trial) -> optuna.trial.FrozenTrial | None:
        """An earlier trial that trains the same thing (then this one is not trained)."""
        ...


@dataclass(frozen=True)
class Proposals:
    """Search trials: the sampler proposes, the space turns the proposal into a config."""

    space: SearchSpace

    def config(self, trial: optuna.Trial) -> TrialConfig:
        """Sample the trial's values and build its config at the search fidelity."""
        return self.space.trial_config(self.space.suggest(trial))

    def run_tags(self, trial: optuna.Trial) -> dict[str, str]:
        """None beyond the common ones."""
        return {}

    def duplicate(self, trial: optuna.Trial) -> optuna.trial.FrozenTrial | None:
        """An earlier trial with the same parameters (:mod:`sweep.search.duplicates`)."""
        return earlier_with_same_settings(trial, taken_trials(trial))


class NoProgress:
    """A progress display that shows nothing (workers, tests)."""

    def trial_started(
        self, number: int, epochs: int, family: str, params: int, label: str
    ) -> None:
        """Ignore."""

    def batch_done(self, number: int, epoch: int, batch: int, batches: int) -> None:
        """Ignore."""

    def epoch_done(self, number: int, epoch: int, metrics: dict[str, float]) -> None:
        """Ignore."""


@dataclass(frozen=True)
class _Setting:
    """A trial config and what goes with it, compared by the settings a cache depends on."""

    key: tuple[Any, ...]
    cfg: TrialConfig = field(compare=False)
    device: torch.device = field(compare=False)
    soft: SoftLabels | None = field(default=None, compare=False)


@dataclass
class TrialContext:
    """What every trial of one process shares: data, teacher, tracker, device."""

    space: SearchSpace
    home: Path
    tracker: Tracker
    parent_id: str
    num_classes: int
    teacher: torch.nn.Module | None
    teacher_path: Path | None = None
    progress: TrialProgress = field(default_factory=NoProgress)

    def __post_init__(self) -> None:
        # One data set and one set of soft labels in memory at a time: consecutive trials
        # mostly share them, and a trial with other settings replaces them.
        self._soft_labels = functools.lru_cache(maxsize=1)(self._load_soft_labels)
        self._data = functools.lru_cache(maxsize=1)(self._load_data)

    def data(self, cfg: TrialConfig) -> TrainData:
        """The trial's data (:mod:`sweep.teacher.trial_data`), built once per distinct setting."""
        device = resolve_device(cfg.train.device)
        soft = None
        if uses_cached_teacher(cfg) and self.teacher is not None and self.teacher_path:
            key = (cfg.dataset, cfg.kd.views, cfg.train.seed, str(device))
            soft = self._soft_labels(_Setting(key, cfg, device))
        train = cfg.train
        key = (cfg.dataset, train.batch_size, train.seed, train.num_workers, cfg.kd.views)
        return self._data(_Setting((*key, soft is not None, str(device)), cfg, device, soft))

    def assistant(self, cfg: TrialConfig) -> torch.nn.Module:
        """TAKD's assistant for ``cfg``, distilled from the study's teacher once."""
        return ensure_assistant(cfg, self)

    def _load_soft_labels(self, setting: _Setting) -> SoftLabels:
        assert self.teacher is not None and self.teacher_path is not None
        return study_soft_labels(
            setting.cfg, self.home, self.teacher, self.teacher_path, setting.device
        )

    def _load_data(self, setting: _Setting) -> TrainData:
        return trial_data(setting.cfg, self.home, setting.device, setting.soft)


class Objective:
    """Callable for ``study.optimize``: one trial from proposal to logged result."""

    def __init__(self, context: TrialContext, source: TrialSource | None = None) -> None:
        self.context = context
        self.source = source or Proposals(context.space)

    def __call__(self, trial: optuna.Trial) -> float:
        interrupts.check()
        ctx = self.context
        cfg = self.source.config(trial)
        # Freeze the student's options whole (defaults filled, ``widths.1`` applied), so the
        # logged params and config.yaml say exactly what was built.
        options = validate_student_options(cfg.student.family, cfg.student.options)
        cfg = replace(cfg, student=replace(cfg.student, options=options))
        check_schedule(cfg, ctx.space.source)
        report, plan = self._check_budget(cfg)
        trial.set_user_attr("params", report.params)
        trial.set_user_attr("initial_params", plan.initial_params)
        trial.set_user_attr("family", cfg.student.family)
        if ctx.space.sampler.get("seed") is not None:  # which sequence proposed it
            trial.set_user_attr("sampler_seed", ctx.space.sampler["seed"])
        if report.macs is not None:
            trial.set_user_attr("macs", report.macs)
        trial.set_constraint(CONSTRAINT, float(report.excess))
        # optuna-dashboard (0.21) shows only the list form Optuna wrote before 5.0; Optuna
        # reads both (this one as constraint "0", with the same sign).
        set_system_attr(trial.storage, trial_id(trial), "constraints", [report.excess])
        if not report.feasible:  # a user attribute too: the dashboard's trial table shows it
            trial.set_user_attr(CONSTRAINT, report.excess)

        run_id = None
        state = "failed"
        try:  # once it exists, the run ends with its trial, whatever stops it
            # Ctrl-C between the two would leave a run that its trial does not name: held
            # back until both are written (and then raised here, inside the try).
            with interrupts.deferred():
                run_id = ctx.tracker.start_trial(
                    ctx.parent_id, trial.number, flatten(cfg), self.source.run_tags(trial)
                )
                trial.set_user_attr("mlflow_run_id", run_id)
            # The pruning ratio rebuilds a pruned student's architecture from config.yaml.
            artifact = StudentArtifact(cfg, ctx.num_classes, plan.prune_ratio)
            ctx.tracker.log_config(run_id, artifact.document())
            ctx.tracker.log_metrics(
                run_id, {"initial_params": plan.initial_params, "prune_ratio": plan.prune_ratio}
            )
            duplicate = self.source.duplicate(trial)
            if duplicate is not None:
                state = "duplicate"
                trial.set_user_attr("state", state)
                trial.set_user_attr("duplicate_of", duplicate.number)
                raise optuna.TrialPruned(f"the same settings as trial {duplicate.number}")
            if not report.feasible:
                state = "infeasible"
                trial.set_user_attr("state", state)
                ctx.tracker.log_metrics(run_id, {"params": report.params})
                raise optuna.TrialPruned(
                    f"{report.params:,} parameters is over the budget of {report.max_params:,}"
                )
            value, stopped = self._train(trial, cfg, run_id, plan, report.macs or 0)
            state = "early-stopped" if stopped else "complete"
            if stopped:
                raise optuna.TrialPruned("stopped early by the pruner")
            return value
        finally:
            if run_id is not None:
                with interrupts.deferred():  # a run half ended would stay RUNNING
                    ctx.tracker.finish_trial(run_id, state)

    def _check_budget(self, cfg: TrialConfig) -> tuple[BudgetReport, Plan]:
        """The final model's count against the budget (after planned compression), and the
        multiply-adds of that final model when it fits."""
        num_classes = self.context.num_classes
        plan = plan_trial(cfg, num_classes)
        report = BudgetReport(plan.final_params, cfg.budget.max_params, cfg.budget.count)
        if report.feasible:
            with torch.random.fork_rng(devices=[]):  # the trial's own model comes after
                final = build_planned(cfg, num_classes, plan.prune_ratio)
            report = replace(report, macs=count_macs(final, cfg.dataset.image_size))
        return report, plan

    def _train(
        self, trial: optuna.Trial, cfg: TrialConfig, run_id: str, plan: Plan, macs: int
    ) -> tuple[float, bool]:
        ctx = self.context
        # Before the trial's data: a new assistant is distilled on data of its own.
        cached_logits = uses_cached_teacher(cfg)
        teacher = trial_teacher(cfg, ctx, cached_logits=cached_logits)
        stages = make_stages(cfg, plan)
        data = ctx.data(cfg)
        # The student's initial weights come from its own seed, not from whatever drew from
        # the global RNG before (building the soft-label cache does, in the first trial only).
        torch.manual_seed(cfg.train.seed)
        model = create_student(cfg.student.family, ctx.num_classes, cfg.student.options)
        distiller = make_distiller(cfg, model, teacher, ctx.num_classes)
        if getattr(data, "skipped", None):
            ctx.tracker.log_metrics(run_id, {"skipped_images": len(data.skipped)})
        ctx.progress.trial_started(
            trial.number,
            cfg.train.epochs,
            cfg.student.family,
            plan.final_params,
            trial_label(trial),
        )

        def on_epoch_end(epoch: int, metrics: dict[str, float]) -> bool:
            ctx.tracker.log_metrics(run_id, metrics, step=epoch)
            trial.set_user_attr(
                "val_acc", max(metrics["val_acc"], trial.user_attrs.get("val_acc", 0.0))
            )
            ctx.progress.epoch_done(trial.number, epoch, metrics)
            trial.report(metrics["val_acc"], epoch)
            return trial.should_prune()

        result = train(
            model,
            data,
            cfg.train,
            kd=cfg.kd,
            teacher=teacher,
            on_epoch_end=on_epoch_end,
            stages=stages,
            distiller=distiller,
            on_batch_end=partial(ctx.progress.batch_done, trial.number),
        )
        distiller.close()
        model = model.cpu()
        params = count_params(model, cfg.budget.count)
        # The budget is hard: a model that grew during training (or ended larger than its
        # plan said) is a bug, not a result. A trial stopped early may end before its last
        # pruning step; it is recorded early-stopped, never on the front.
        if not result.stopped_early and params > min(cfg.budget.max_params, plan.final_params):
            raise RuntimeError(
                f"trained model has {params} parameters; planned {plan.final_params}, "
                f"budget {cfg.budget.max_params}"
            )
        trial.set_user_attr("val_acc", result.val_acc)
        trial.set_user_attr("best_epoch", result.best_epoch)
        # Written again, now with the class names: what ``sweep predict`` labels with.
        artifact = StudentArtifact(
            cfg, ctx.num_classes, plan.prune_ratio, class_names=data.class_names
        )
        self._log_trained(run_id, model, result, data, artifact, {"params": params, "macs": macs})
        return result.val_acc, result.stopped_early

    def _log_trained(
        self,
        run_id: str,
        model: torch.nn.Module,
        result: TrainResult,
        data: TrainData,
        artifact: StudentArtifact,
        counted: dict[str, int],
    ) -> None:
        """What the trial's run keeps of the trained student: its one-off facts (with int8's
        accuracy and size when ``quantize.int8``), the checkpoint, the int8 program,
        torchsummary's table and its config with the class names."""
        cfg = artifact.config
        # One value each, at step 0 (MLflow shows a lone step-0 value as a value, not a
        # one-point curve); the per-epoch curves (val_acc, losses, lr...) hold one point an epoch.
        facts: dict[str, float] = {"best_val_acc": result.val_acc, **counted}
        tracker = self.context.tracker
        with tempfile.TemporaryDirectory() as tmp:
            int8 = Path(tmp) / "student_int8.pt2"
            if cfg.quantize.int8:
                facts.update(self._quantize(model, data, cfg, int8))
            summary = model_summary(model, cfg.dataset.image_size)
            facts.update(
                params_dense=count_params(model, "dense"),
                params_nonzero=count_params(model, "nonzero"),
                train_seconds=result.train_seconds,
                best_epoch=result.best_epoch,
            )
            checkpoint = save_state_dict(result.state_dict, Path(tmp) / Path(RUN_WEIGHTS).name)
            tracker.log_metrics(run_id, facts)
            note = trial_note(
                cfg,
                counted["params"],
                counted["macs"],
                val_acc=result.val_acc,
                best_epoch=result.best_epoch,
                epochs_run=len(result.history),
                stopped_early=result.stopped_early,
                seconds=result.train_seconds,
            )
            tracker.describe(run_id, note)
            tracker.log_artifact(run_id, checkpoint, str(Path(RUN_WEIGHTS).parent))
            if cfg.quantize.int8:
                tracker.log_artifact(run_id, int8, "int8")
        tracker.log_files(run_id, {"model_summary.txt": summary})
        tracker.log_config(run_id, artifact.document())

    @staticmethod
    def _quantize(
        model: torch.nn.Module, data: TrainData, cfg: TrialConfig, path: Path
    ) -> dict[str, float]:
        """Post-training int8 of the trained student, saved at ``path``: its accuracy and size."""
        from sweep.compress.quantize import quantize_and_measure, save_quantized

        program, measured = quantize_and_measure(
            model, data, cfg.dataset.image_size, cfg.quantize.calibration_batches, cpu_accuracy
        )
        save_quantized(program, path)
        return measured
