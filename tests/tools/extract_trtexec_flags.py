"""Print the flags trtexec's --help lists at one TensorRT tag (used to make
tests/data/trtexec_flags/*.txt): run inside a clone of github.com/NVIDIA/TensorRT,
``python extract_trtexec_flags.py 8.5.2``. Flags the parser warns about as deprecated are marked
by hand-checked greps (see the data files' headers)."""

import re
import subprocess
import sys

tag = sys.argv[1]
src = subprocess.run(
    ["git", "show", f"{tag}:samples/common/sampleOptions.cpp"],
    capture_output=True,
    text=True,
    check=True,
).stdout
# help functions that trtexec's AllOptions::help prints
names = [
    "BaseModelOptions",
    "UffInput",
    "ModelOptions",
    "BuildOptions",
    "SystemOptions",
    "InferenceOptions",
    "ReportingOptions",
    "TuningOptions",
    "TaskInferenceOptions",
    "helpHelp",
]
flags = {}
for m in re.finditer(r"^void (\w+)::help\(|^void (helpHelp)\(", src, re.M):
    owner = m.group(1) or m.group(2)
    if owner not in names:
        continue
    body = src[m.end() : src.find("\n}\n", m.end())]
    for line in body.splitlines():
        mm = re.search(r'"\s{1,4}(--[A-Za-z0-9]+|-h|-v)\b(.*)', line)
        if not mm:
            continue
        flag, rest = mm.group(1), mm.group(2)
        dep = "[Deprecated]" in rest or "deprecated" in rest.lower()[:80]
        flags.setdefault(flag, dep)
# flags printed as "--help" line in trtexec.cpp
for f in sorted(flags):
    print(f + ("  deprecated" if flags[f] else ""))
