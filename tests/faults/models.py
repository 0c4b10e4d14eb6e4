"""A deliberately slow but legitimate model: a deep stack of one shared 3x3 convolution.

The weights are shared, so the file stays small while each case costs real CPU time in the
sandbox; that opens a window to kill a worker in the middle of a chunk."""

from __future__ import annotations

from pathlib import Path


def slow_model(
    path: Path, *, channels: int = 100, classes: int = 12, depth: int = 200, width: int = 128
) -> Path:
    import torch

    class Deep(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inp = torch.nn.Conv2d(channels, width, 1)
            self.mid = torch.nn.Conv2d(width, width, 3, padding=1)
            self.out = torch.nn.Conv2d(width, classes, 1)

        def forward(self, x):
            h = torch.relu(self.inp(x))
            for _ in range(depth):
                h = torch.relu(self.mid(h)) * 0.5 + h * 0.5
            return self.out(h)

    torch.manual_seed(0)
    net = Deep().eval()
    x = torch.rand(1, channels, 8, 8)
    torch.onnx.export(
        net,
        x,
        str(path),
        input_names=["x"],
        output_names=["y"],
        dynamo=False,
        dynamic_axes={"x": {0: "b", 2: "h", 3: "w"}, "y": {0: "b", 2: "h", 3: "w"}},
    )
    return path


# --- hostile models (TorchScript: what a participant's file can do inside the sandbox) -------

_HOSTILE = {
    # 2 GB to stdout, 1 MB per print.
    "flood": """
class Hostile(torch.nn.Module):
    def forward(self, x):
        s = "y"
        for i in range(20):
            s = s + s
        for i in range(2048):
            print(s)
        return torch.zeros(x.shape[0], {classes}, x.shape[2], x.shape[3])
""",
    # 4 GiB resident, far over the phase's memory.
    "hog": """
class Hostile(torch.nn.Module):
    def forward(self, x):
        y = torch.ones(4 * 1024 * 1024 * 1024, dtype=torch.uint8)
        return torch.zeros(x.shape[0], {classes}, x.shape[2], x.shape[3]) + y[-1].float() * 0
""",
    # Reads a cube by path (only at inference; validation's dummy cube is 48 x 64): only the
    # run's own cases are there.
    "reader": """
class Hostile(torch.nn.Module):
    def forward(self, x):
        out = torch.zeros(x.shape[0], {classes}, x.shape[2], x.shape[3])
        if x.shape[2] != 48:
            t = torch.from_file("/input/{target}.npy", shared=False, size=64, dtype=torch.uint8)
            out = out + t[0].float() * 0
        return out
""",
}


def hostile_model(path: Path, kind: str, *, classes: int = 12, target: str = "") -> Path:
    """A TorchScript model that attacks the sandbox (see _HOSTILE)."""
    import importlib.util

    import torch

    source = "import torch\n" + _HOSTILE[kind].format(classes=classes, target=target)
    module_file = path.with_suffix(".py")
    module_file.write_text(source)
    spec = importlib.util.spec_from_file_location(f"hostile_{kind}", module_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.jit.save(torch.jit.script(module.Hostile()), str(path))
    return path


def submit_files(phase_id: int, user_id: int, paths: list[str]) -> list:
    """Submit each file as the API would: the submission id, or the refusal's text."""
    from accounts.models import User
    from challenges.models import Phase
    from submissions.services import SubmissionRefused, submit

    phase, user = Phase.objects.get(pk=phase_id), User.objects.get(pk=user_id)
    out: list = []
    for k, p in enumerate(paths):
        data = Path(p).read_bytes()
        try:
            sub = submit(phase, user, [data], original_name=Path(p).name, method_name=f"h{k}")
            out.append(sub.pk)
        except SubmissionRefused as exc:
            out.append(str(exc))
    return out
