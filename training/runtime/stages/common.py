"""What both stages share: device and precision, Trainer arguments from a recipe stage, the callback
that turns Trainer logs into events, and the graceful-stop flag set by SIGTERM/SIGINT."""
from __future__ import annotations

import importlib.util
import math
import os
import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import TrainerCallback

from training.runtime.defaults import loader_settings
from training.events import EventWriter


class StopFlag:
    """Set by SIGTERM/SIGINT; the callback then asks the Trainer to save a checkpoint and stop."""

    requested = False
    reason = ""

    @classmethod
    def install(cls) -> None:
        def handler(signum, frame):
            cls.requested = True
            cls.reason = signal.Signals(signum).name

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)
        # closing the terminal must never stop training: the runner starts us in our own session, and
        # SIGHUP (should it still arrive) is ignored
        signal.signal(signal.SIGHUP, signal.SIG_IGN)


@dataclass
class Ctx:
    """What a stage gets from the worker."""
    run_dir: Path
    events: EventWriter
    stage_index: int
    base_model: str  # model id or folder this stage starts from
    tokenizer_src: str
    revision: str | None
    trust_remote_code: bool
    seed: int
    is_main: bool = True  # global rank 0: writes events, the tokenizer and the run's outputs
    world_size: int = 1  # processes training together (data-parallel or sharded)
    resume_from: str | None = None  # a checkpoint folder of this stage
    extra_callbacks: list = field(default_factory=list)  # put first in the Trainer's callbacks (the worker's Guard)
    report_to: list = field(default_factory=list)  # experiment trackers (training/runtime/trackers.py)
    eval_spec: object = None  # the recipe's `eval` section (EvalSpec): the forgetting watch reads it


def cuda() -> bool:
    return torch.cuda.is_available()


def device():
    """What this process's device can compute in (training/runtime/precision.py decides from it)."""
    from training.runtime.precision import Device
    return Device(cuda=cuda(), bf16=cuda() and torch.cuda.is_bf16_supported())


def sharded() -> bool:
    """FSDP or DeepSpeed (accelerate launch sets these for the worker processes it starts)."""
    return any(os.environ.get(k, "").lower() in ("1", "true")
               for k in ("ACCELERATE_USE_FSDP", "ACCELERATE_USE_DEEPSPEED"))


def resolve_precision(p: str) -> str:
    """The compute dtype: auto is bf16 where the GPU supports it, else fp16 on older GPUs, fp32 on the CPU;
    an explicit bf16 on the CPU is honoured (training/runtime/precision.py)."""
    from training.runtime.precision import compute_dtype
    return compute_dtype(p, device())[0]


def precision_plan(st, kind: str):
    """Compute dtype, load dtype, master weights and optimizer for this stage, said in train.log."""
    from training.runtime.precision import choose_precision
    plan = choose_precision(st.precision, kind, device(), getattr(st, "master_weights", "auto"), sharded())
    for note in plan.notes:
        print(f"[{st.name}] precision: {note}", flush=True)
    print(f"[{st.name}] precision: compute {plan.compute}, weights loaded in {plan.load_dtype}"
          + (f", master weights {plan.master}" if plan.master else "") + f", optimizer {plan.optimizer}", flush=True)
    return plan


def optimizer_cls_and_kwargs(plan, args):
    """The Trainer's optimizer for bf16 weights with Kahan summation (torch-optimi's AdamW, which keeps
    its state and compensation buffer in the weights' dtype); None: the Trainer's own AdamW (args.optim)."""
    if not plan.kahan:
        return None
    from optimi import AdamW
    return AdamW, dict(lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2), eps=args.adam_epsilon,
                       kahan_sum=True)


def local_device_index(env=None) -> int:
    """The GPU this process trains on: accelerate launch sets LOCAL_RANK before anything sets the device
    (torch.cuda.current_device() is still 0 on every rank at model-loading time)."""
    env = os.environ if env is None else env
    return int(env.get("LOCAL_RANK", "0") or 0)


def torch_dtype(precision: str):
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[precision]


def plan_steps(n_examples: int, st, world: int = 1) -> tuple[int, int]:
    """(steps per epoch, total optimizer steps) as the Trainer will count them."""
    per_step = st.micro_batch_size * st.grad_accum * world
    per_epoch = max(1, math.ceil(n_examples / per_step))
    total = st.max_steps or max(1, math.ceil(st.epochs * per_epoch))
    return per_epoch, total


def every(total: int, explicit: int | None, n: int = 5) -> int:
    return explicit or max(1, total // n)


def training_args_kwargs(st, ctx: Ctx, precision, total_steps: int, has_eval: bool) -> dict:
    """`precision`: a PrecisionPlan (training/runtime/precision.py) or a compute dtype name."""
    optim = "adamw_torch_fused" if cuda() else "adamw_torch"
    if not isinstance(precision, str):
        optim = precision.optimizer if precision.optimizer.startswith("adamw_") else "adamw_torch"
        precision = precision.compute
    ckpt = ctx.run_dir / "checkpoints" / st.name
    if ctx.report_to:  # each tracker logs into the run folder where it can, and never prompts for a login
        from training.runtime.trackers import tracker_env
        os.environ.update(tracker_env(ctx.report_to, ctx.run_dir, st.name, ctx.run_dir.name)[0])
    kw = dict(
        output_dir=str(ckpt),
        per_device_train_batch_size=st.micro_batch_size,
        per_device_eval_batch_size=st.micro_batch_size,
        gradient_accumulation_steps=st.grad_accum,
        learning_rate=st.learning_rate,
        lr_scheduler_type=st.lr_scheduler,
        warmup_steps=max(0, round(st.warmup_ratio * total_steps)),
        num_train_epochs=st.epochs,
        max_steps=total_steps,
        weight_decay=st.weight_decay,
        max_grad_norm=st.max_grad_norm,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=not cuda(),
        gradient_checkpointing=st.gradient_checkpointing,
        logging_steps=st.logging_steps,
        logging_first_step=True,
        logging_nan_inf_filter=False,  # a NaN loss must be seen, not averaged away
        eval_strategy="steps" if has_eval else "no",
        eval_steps=every(total_steps, st.eval_steps) if has_eval else None,
        save_strategy="steps",
        save_steps=every(total_steps, st.save_steps),
        save_total_limit=st.save_total_limit,
        seed=ctx.seed,
        data_seed=ctx.seed,
        report_to=list(ctx.report_to) if ctx.is_main and ctx.report_to else "none",
        disable_tqdm=True,
        include_num_input_tokens_seen="non_padding",
        optim=optim,
        remove_unused_columns=False,
        ddp_find_unused_parameters=False,  # every trainable weight is used each step (full model or LoRA)
        use_liger_kernel=use_liger(st),
        **loader_settings(cuda()),
    )
    return kw


def use_liger(st) -> bool:
    """Liger kernels as resolved (training/runtime/defaults.py), and only where they can run: CUDA + liger-kernel."""
    if not st.liger_kernel:
        return False
    if not (cuda() and importlib.util.find_spec("liger_kernel")):
        print(f"[{st.name}] liger_kernel: true needs CUDA and liger-kernel; training without it", flush=True)
        return False
    return True


def attn_implementation(st, model: str | None = None, revision: str | None = None, trust_remote_code: bool = False,
                        requested: str | None = None) -> str:
    """The attention kernel for this model, asked of its class (training/family.py): flash-attention where
    CUDA and flash_attn are there, else sdpa, else eager (Gemma2 refuses sdpa). Said in train.log when it differs."""
    from training.family import attention
    config = None
    if model is not None:
        from transformers import AutoConfig
        config = AutoConfig.from_pretrained(model, revision=revision, trust_remote_code=trust_remote_code)
    asked = requested or st.attention
    impl, why = attention(config, asked, cuda(), importlib.util.find_spec("flash_attn") is not None)
    if why and st is not None:
        print(f"[{st.name}] attention: {asked} -> {impl} ({why})", flush=True)
    return impl


class EventCallback(TrainerCallback):
    """Trainer logs -> `step`, `eval`, `checkpoint` events; SIGTERM -> checkpoint, then stop."""

    def __init__(self, ctx: Ctx, stage, total_steps: int):
        self.ctx, self.stage, self.total = ctx, stage, total_steps
        self.t_last = None
        self.tok_last = 0
        self.step_last = 0
        self.t_start = None
        self.last_loss = None
        self.stopped_at = None

    def on_train_begin(self, args, state, control, **kw):
        if self.ctx.world_size > 1:  # to train.log: what each rank really trains (DDP copy or FSDP shards)
            from accelerate.state import AcceleratorState
            param = next(kw["model"].parameters())  # FSDP2 shards in place: its parameters become DTensors
            print(f"tune-wizard worker: {self.stage.name}: rank {args.process_index}/{args.world_size}, "
                  f"{AcceleratorState().distributed_type.value}, parameters held as {type(param.data).__name__}",
                  flush=True)
        self.t_start = self.t_last = time.time()
        self.step_last = state.global_step
        self.tok_last = state.num_input_tokens_seen or 0

    def on_log(self, args, state, control, logs=None, **kw):
        if not self.ctx.is_main or not logs:
            return
        now = time.time()
        if "loss" in logs:
            tokens = int(state.num_input_tokens_seen or 0)
            dt = max(1e-9, now - self.t_last)
            dsteps = max(1, state.global_step - self.step_last)
            step_time = dt / dsteps
            tps = (tokens - self.tok_last) / dt
            self.last_loss = logs["loss"]
            self.ctx.events.emit(
                "step", stage=self.stage.name, step=state.global_step, total_steps=self.total,
                epoch=logs.get("epoch", state.epoch), loss=logs["loss"], lr=logs.get("learning_rate"),
                grad_norm=logs.get("grad_norm"), tokens=tokens, tokens_per_s=tps, step_time_s=step_time,
                elapsed_s=now - self.t_start, eta_s=step_time * max(0, self.total - state.global_step))
            self.t_last, self.tok_last, self.step_last = now, tokens, state.global_step
        if "eval_loss" in logs:
            el = logs["eval_loss"]
            self.ctx.events.emit("eval", stage=self.stage.name, step=state.global_step, eval_loss=el,
                                 perplexity=math.exp(el) if el < 50 else float("inf"),
                                 **{k: logs[k] for k in ("general_perplexity", "general_perplexity_change_pct")
                                    if k in logs})  # the forgetting watch's (training/runtime/forgetting.py)

    def on_save(self, args, state, control, **kw):
        if self.ctx.is_main:
            path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            self.ctx.events.emit("checkpoint", stage=self.stage.name, step=state.global_step,
                                 path=str(path.relative_to(self.ctx.run_dir)))

    def on_step_end(self, args, state, control, **kw):
        if self.ctx.world_size > 1 and self.stopped_at is None:
            StopFlag.requested = any_rank(StopFlag.requested, args.device)
        if StopFlag.requested and self.stopped_at is None:
            self.stopped_at = state.global_step
            control.should_save = True
            control.should_training_stop = True
        return control


def any_rank(flag: bool, device) -> bool:
    """True on every rank when it is true on one: all ranks must stop (and checkpoint) at the same step,
    or the ones going on would wait forever for the others in the next all-reduce."""
    import torch.distributed as dist
    if not (dist.is_available() and dist.is_initialized()):
        return flag
    t = torch.tensor([1 if flag else 0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


@contextmanager
def main_rank_first(ctx: Ctx):
    """Under several processes, rank 0 runs the block first (say, tokenizing into the run's cache) while
    the others wait, then they run it and find the cache. One process: just runs it."""
    if ctx.world_size <= 1:
        yield
        return
    from accelerate import PartialState
    with PartialState(cpu=not cuda()).main_process_first():
        yield


def load_tokenizer(ctx: Ctx):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(ctx.tokenizer_src, revision=ctx.revision,
                                        trust_remote_code=ctx.trust_remote_code)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def count_params(model) -> tuple[int, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable


def set_threads() -> None:
    if not cuda():  # processes on the same machine share its cores
        local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local))
