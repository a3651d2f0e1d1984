"""Where the counted instructions go: the counter's per-block counts (devices/emulated/icount.c, `profile=`) mapped
to the functions of the libraries the runner had loaded, by their ELF symbols (the runtimes ship them: XNNPACK's
microkernels are named after their shapes and instruction sets, e.g. `xnn_f32_igemm_minmax_ukernel_4x8__...`)."""

from __future__ import annotations

import bisect
from collections import Counter
from pathlib import Path


class _Symbols:
    """One library's function symbols, by address, and how its file offsets map to those addresses."""

    def __init__(self, path: str):
        from elftools.common.exceptions import ELFError
        from elftools.elf.elffile import ELFFile

        self.segments: list[tuple[int, int, int]] = []
        self.functions: list[tuple[int, int, str]] = []
        try:
            with open(path, "rb") as handle:
                elf = ELFFile(handle)
                self.segments = [(s["p_offset"], s["p_vaddr"], s["p_filesz"]) for s in elf.iter_segments()
                                 if s["p_type"] == "PT_LOAD"]
                for table in (".symtab", ".dynsym"):
                    section = elf.get_section_by_name(table)
                    for symbol in section.iter_symbols() if section is not None else ():
                        if symbol["st_info"]["type"] == "STT_FUNC" and symbol["st_value"]:
                            self.functions.append((symbol["st_value"], symbol["st_size"], symbol.name))
        except (OSError, ELFError):
            pass
        self.functions.sort()
        self.starts = [f[0] for f in self.functions]

    def name(self, file_offset: int) -> str | None:
        address = next((file_offset - start + vaddr for start, vaddr, size in self.segments
                        if start <= file_offset < start + size), None)
        if address is None or not self.functions:
            return None
        i = bisect.bisect_right(self.starts, address) - 1
        if i < 0:
            return None
        start, size, name = self.functions[i]
        return name if address < start + max(size, 1) else None


def hot_symbols(blocks: Path, maps: list, runs: int, top: int = 12) -> list[list]:
    """[[library:function, instructions per inference, share], ...] of the `top` costliest functions."""
    maps = sorted(maps)
    starts = [m[0] for m in maps]
    libraries: dict[str, _Symbols] = {}
    cost: Counter = Counter()
    try:
        lines = blocks.read_text().split("\n")
    except OSError:
        return []
    for line in lines:
        fields = line.split()
        if len(fields) != 3:
            continue
        address, instructions, executions = int(fields[0], 16), int(fields[1]), int(fields[2])
        i = bisect.bisect_right(starts, address) - 1
        where = "?"
        if i >= 0 and address < maps[i][1]:
            start, _, offset, path = maps[i]
            if path not in libraries:  # parsed once per library, not once per block
                libraries[path] = _Symbols(path)
            symbols = libraries[path]
            where = f"{Path(path).name}:{symbols.name(address - start + offset) or '?'}"
        cost[where] += instructions * executions
    total = sum(cost.values()) or 1
    return [[name, round(count / runs), round(count / total, 4)] for name, count in cost.most_common(top)]
