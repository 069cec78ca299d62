"""Executing a plan's programs: pipelines, bind groups and dispatches of one session.

The host does nothing but what the plan says: for each op, bind the op's
parameter words (binding 0), the step uniform it names (binding 1: "body" or
"head"), and its buffers (2..: session buffers by name, weight parts by
[tensor, part]), then dispatch the op's grid evaluated at the step's row
count n. Ops with a decode variant (k1/g1) use it when n == 1.
A batch of several sessions (realm_web/gpu/batch.py) compiles the same ops
with other bindings (compile_op) and dispatches them the same way (dispatch).
"""
from __future__ import annotations

from dataclasses import dataclass

from .weights import UNIFORM_ALIGN


def grid_at(g, n: int) -> tuple[int, int, int]:
    out = []
    for c, div in g:
        out.append(max(1, int(c) * (-(-n // int(div)) if div else 1)))
    return tuple(out)


@dataclass
class CompiledOp:
    label: str
    step: int
    pipe: object
    bg: object
    grid: list
    pipe1: object = None
    bg1: object = None
    grid1: list | None = None
    per_session: bool = False  # the plan's "s": a session op (run once per session in a batch)
    hook: int | None = None    # the plan's "hook": the LoRA slot whose adapters' ops follow this op


def compile_raw(dev, kernels, params, param_off: int, o: dict, resolve, tensor, step_buf) -> CompiledOp:
    """An op of a plan (or of a LoRA plan): its parameter words at params[param_off], buffer
    names bound through resolve(name), [tensor, part] through tensor(t, p), binding 1 to step_buf."""
    resources = [{"buffer": params, "offset": param_off, "size": UNIFORM_ALIGN},
                 {"buffer": step_buf, "offset": 0, "size": 16}]
    for b in o["b"]:
        buf = resolve(b) if isinstance(b, str) else tensor(b[0], b[1])
        resources.append({"buffer": buf, "offset": 0, "size": buf.size})

    def compile_(kidx):
        k = kernels[kidx]
        pipe = dev.pipelines.get(k["file"], k.get("entry", "main"), k["defines"], k["constants"])
        bg = dev.device.create_bind_group(
            layout=pipe.get_bind_group_layout(0),
            entries=[{"binding": j, "resource": r} for j, r in enumerate(resources)])
        return pipe, bg
    pipe, bg = compile_(o["k"])
    op = CompiledOp(o["label"], o["step"], pipe, bg, o["g"], per_session=bool(o.get("s", 0)), hook=o.get("hook"))
    if "k1" in o:
        op.pipe1, op.bg1 = compile_(o["k1"])
        op.grid1 = o["g1"]
    return op


def compile_op(dev, plan, weights, program: str, i: int, o: dict, resolve, step_buf) -> CompiledOp:
    """Op i of `program`, its buffer names bound through resolve(name) and binding 1 to step_buf."""
    return compile_raw(dev, plan.kernels, weights.params, weights.param_offsets[program][i], o, resolve,
                       weights.buffer, step_buf)


def dispatch(cpass, op: CompiledOp, n: int, last=None):
    """Dispatch one compiled op for a step of n rows; returns the pipeline now set."""
    if n == 1 and op.pipe1 is not None:
        pipe, bg, g = op.pipe1, op.bg1, op.grid1
    else:
        pipe, bg, g = op.pipe, op.bg, op.grid
    if pipe is not last:
        cpass.set_pipeline(pipe)
    cpass.set_bind_group(0, bg)
    cpass.dispatch_workgroups(*grid_at(g, n))
    return pipe


# programs a session alone never runs (a batch of several sessions runs them on its own buffers)
BATCH_ONLY = ("head_rows",)


class Runner:
    """The compiled programs of one session (its buffers bound into every op)."""

    def __init__(self, dev, plan, weights, bufs: dict, step_bufs: tuple) -> None:
        self.dev = dev
        self.bufs = bufs
        self.step_bufs = step_bufs
        self.hooks: dict[int, list[CompiledOp]] = {}  # LoRA slot -> the session's adapters' ops
        self.programs: dict[str, list[CompiledOp]] = {}
        for name, ops in plan.programs.items():
            if name in BATCH_ONLY:
                continue
            self.programs[name] = [compile_op(dev, plan, weights, name, i, o, bufs.__getitem__, step_bufs[o["step"]])
                                   for i, o in enumerate(ops)]

    def record(self, cpass, program: str, n: int) -> None:
        """Dispatch every op of `program` for a step of n rows."""
        last = None
        hooks = self.hooks
        for op in self.programs[program]:
            last = dispatch(cpass, op, n, last)
            if op.hook is not None and op.hook in hooks:
                for lo in hooks[op.hook]:
                    last = dispatch(cpass, lo, n, last)

    def set_lora(self, lops) -> None:
        """Run the ops of a LoraOps (realm_web/gpu/lora.py) after the ops they hook; None: none."""
        self.hooks = lops.compile(self.bufs.__getitem__, self.step_bufs) if lops is not None else {}
