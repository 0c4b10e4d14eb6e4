"""Static checks of the pickles inside a torch.export (.pt2) archive, run before any load.

torch.export.load unpickles weights and constants marked ``use_pickle`` with
``weights_only=False``, which runs whatever the pickle names. Here every such payload is read
with ``pickletools`` (opcodes only, nothing is executed) and refused when it imports anything
outside a small allow-list of tensor-rebuilding functions, or uses opcodes that build objects
from arbitrary classes.
"""

from __future__ import annotations

import io
import json
import pickletools
import zipfile

from .errors import ModelFormatError

ALLOWED_GLOBALS = frozenset(
    {
        "collections.OrderedDict",
        "torch._utils._rebuild_tensor",
        "torch._utils._rebuild_tensor_v2",
        "torch._utils._rebuild_tensor_v3",
        "torch._utils._rebuild_parameter",
        "torch._utils._rebuild_parameter_with_state",
        "torch._tensor._rebuild_from_type_v2",
        "torch.nn.parameter.Parameter",
        "torch.Tensor",
        "torch.Size",
        "torch.device",
        "torch.serialization._get_layout",
        "torch.storage.UntypedStorage",
        "torch.storage.TypedStorage",
    }
)
_STORAGE_SUFFIX = "Storage"  # torch.FloatStorage, torch.ByteStorage, ...
_STRING_OPS = frozenset(
    {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING"}
)
_FORBIDDEN_OPS = frozenset({"INST", "OBJ", "EXT1", "EXT2", "EXT4"})
MAX_PICKLE_BYTES = 64 * 1024**2


def _allowed(name: str) -> bool:
    if name in ALLOWED_GLOBALS:
        return True
    module, _, attr = name.rpartition(".")
    return module == "torch" and attr.endswith(_STORAGE_SUFFIX)


def pickle_globals(data: bytes) -> set[str]:
    """Every global a pickle imports (GLOBAL and STACK_GLOBAL), without executing it.
    Raises ModelFormatError for opcodes that instantiate arbitrary classes or a malformed
    stream."""
    found: set[str] = set()
    strings: list[str] = []  # recent string constants, for STACK_GLOBAL
    memo: dict[int, str] = {}
    try:
        for op, arg, _ in pickletools.genops(io.BytesIO(data)):
            name = op.name
            if name in _FORBIDDEN_OPS:
                raise ModelFormatError(f"a pickle in the archive uses the {name} opcode")
            if name in _STRING_OPS:
                strings.append(str(arg))
            elif name in ("BINPUT", "LONG_BINPUT", "PUT") and strings:
                memo[int(arg)] = strings[-1]
            elif name in ("BINGET", "LONG_BINGET", "GET"):
                strings.append(memo.get(int(arg), "?"))
            elif name == "MEMOIZE" and strings:
                memo[len(memo)] = strings[-1]
            elif name == "GLOBAL":
                found.add(str(arg).replace(" ", "."))
            elif name == "STACK_GLOBAL":
                found.add(".".join(strings[-2:]) if len(strings) >= 2 else "?")
    except ModelFormatError:
        raise
    except Exception as exc:  # noqa: BLE001 - a malformed stream is refused, not crashed on
        raise ModelFormatError(f"a pickle in the archive is malformed ({exc})") from None
    return found


def check_pickle(data: bytes, where: str) -> None:
    """Refuse a pickle (or a torch.save zip around one) that imports anything unexpected."""
    if data[:4] == b"PK\x03\x04":
        with zipfile.ZipFile(io.BytesIO(data)) as inner:
            for info in inner.infolist():
                if info.filename.endswith(".pkl"):
                    if info.file_size > MAX_PICKLE_BYTES:
                        raise ModelFormatError(f"{where}: pickle too large")
                    check_pickle(inner.read(info), f"{where}/{info.filename}")
        return
    bad = sorted(g for g in pickle_globals(data) if not _allowed(g))
    if bad:
        raise ModelFormatError(
            f"the archive's {where} is a pickle that imports {', '.join(bad[:3])}: refused "
            "(pickled code would run on load); export with torch.export.save"
        )


def check_torch_export(path) -> None:
    """Every member under data/ that is not a raw tensor payload (named by a config with
    use_pickle false) must be a pickle, or a torch.save zip, that passes check_pickle: this
    covers use_pickle weights and constants, legacy pickled weights and sample inputs."""
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        raw: set[str] = set()
        for name in names:
            if name.endswith("_config.json"):
                raw |= _raw_members(zf, name)
        for name in names:
            rel = name.split("/", 1)[1] if "/" in name else name
            if not rel.startswith("data/") or name.endswith((".json", "/")) or name in raw:
                continue
            info = zf.getinfo(name)
            if info.file_size > MAX_PICKLE_BYTES:
                raise ModelFormatError(f"the archive's {rel} is too large for a pickled payload")
            check_pickle(zf.read(info), rel)


def _raw_members(zf: zipfile.ZipFile, name: str) -> set[str]:
    """Members a payload config names as raw tensor bytes (use_pickle false)."""
    try:
        config = json.loads(zf.read(name)).get("config", {})
    except (ValueError, AttributeError):
        raise ModelFormatError(f"the archive's {name} is not valid JSON") from None
    folder = name.rsplit("/", 1)[0]
    if not isinstance(config, dict):
        return set()
    return {
        f"{folder}/{meta.get('path_name', '')}"
        for meta in config.values()
        if isinstance(meta, dict) and not meta.get("use_pickle")
    }
