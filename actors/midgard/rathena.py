"""Readers for an operator's rAthena checkout: what ``norn scenario import`` builds a world from.

Every reader reads files in place and returns plain records that remember where they came
from (``file``, ``line``); a malformed line is a ``RathenaDataError`` naming the file and
line, the way rAthena's own map server reports it. Nothing is copied or cached.

- ``read_map_index``: ``db/map_index.txt`` (map names, in index order).
- ``read_map_cache``: ``db/map_cache.dat`` then ``db/<mode>/map_cache.dat`` (the second's
  maps replace the first's): each map's size and cell grid (``doc/map_cache.txt``: an
  8-byte header, then per map a 12-byte name, int16 x and y sizes, int32 length and the
  zlib-compressed cells, one byte each, gat types).
- ``script_files``: the NPC scripts a server loads, from ``npc/scripts_*.conf`` and
  ``npc/<mode>/scripts_*.conf`` (``npc:`` and ``import:`` lines), in load order.
- ``read_scripts``: warps (``warp``/``warp2``), shops (``shop``, ``cashshop``,
  ``itemshop``, ``pointshop``, ``marketshop``) and permanent monster spawns
  (``monster``, ``boss_monster``, ``miniboss_monster``) of those files; script blocks
  in braces are skipped.
- ``read_items``, ``read_mobs``, ``read_quests``: the YAML databases (``Body`` entries),
  read line by line for the keys Norn uses, so an error names its line.
"""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from norn.engine.errors import ConfigError

#: gat cell types rAthena treats as not walkable (map_gat2cell: 1 wall, 5 gap/cliff)
BLOCKED_GAT = (1, 5)
SHOP_KINDS = ("shop", "cashshop", "itemshop", "pointshop", "marketshop")
MONSTER_KINDS = ("monster", "boss_monster", "miniboss_monster")


class RathenaDataError(ConfigError):
    """A file of the operator's rAthena checkout is missing or malformed (file and line)."""


def _fail(path: Path, line: int | None, message: str) -> RathenaDataError:
    where = f"{path}:{line}" if line else str(path)
    return RathenaDataError(f"{where}: {message}")


# -- maps -------------------------------------------------------------------------------
@dataclass(frozen=True)
class MapGrid:
    name: str
    width: int
    height: int
    cells: bytes  # gat types, row 0 at y = 0 (zlib-decompressed)
    file: Path

    def walkable(self) -> np.ndarray:
        """(height, width) bool: cells a character can stand on."""
        g = np.frombuffer(self.cells, np.uint8).reshape(self.height, self.width)
        return ~np.isin(g, BLOCKED_GAT)


def read_map_index(root: Path) -> list[str]:
    path = root / "db" / "map_index.txt"
    if not path.is_file():
        raise _fail(path, None, "map index not found (is --rathena an rAthena checkout?)")
    names: list[str] = []
    for n, raw in enumerate(path.read_text(errors="replace").splitlines(), 1):
        line = raw.split("//", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) > 2 or (len(parts) == 2 and not parts[1].isdigit()):
            raise _fail(path, n, f"expected 'mapname [index]', got {raw.strip()!r}")
        names.append(parts[0])
    return names


def _read_one_cache(path: Path) -> dict[str, MapGrid]:
    data = path.read_bytes()
    if len(data) < 8:
        raise _fail(path, None, "map cache shorter than its 8-byte header")
    size, count = struct.unpack_from("<IH", data, 0)
    if size != len(data):
        raise _fail(path, None, f"header says {size} bytes, file has {len(data)}")
    out: dict[str, MapGrid] = {}
    off = 8
    for k in range(count):
        if off + 20 > len(data):
            raise _fail(path, None, f"map {k} of {count}: header past the end of the file")
        name = data[off : off + 12].split(b"\0", 1)[0].decode("latin-1")
        xs, ys, length = struct.unpack_from("<hhi", data, off + 12)
        off += 20
        if xs <= 0 or ys <= 0 or length < 0 or off + length > len(data):
            raise _fail(path, None, f"map {name!r} (#{k}): bad size {xs}x{ys} or length {length}")
        try:
            cells = zlib.decompress(data[off : off + length])
        except zlib.error as exc:
            raise _fail(path, None, f"map {name!r} (#{k}): cells do not inflate: {exc}") from None
        if len(cells) != xs * ys:
            raise _fail(path, None, f"map {name!r}: {len(cells)} cells for {xs}x{ys}")
        off += length
        out[name] = MapGrid(name, xs, ys, cells, path)
    return out


def read_map_cache(root: Path, mode: str) -> dict[str, MapGrid]:
    """Every cached map; ``db/<mode>/map_cache.dat`` replaces ``db/map_cache.dat``'s."""
    paths = [p for p in (root / "db" / "map_cache.dat", root / "db" / mode / "map_cache.dat")
             if p.is_file()]
    if not paths:
        raise _fail(root / "db" / "map_cache.dat", None, "no map cache found")
    out: dict[str, MapGrid] = {}
    for p in paths:
        out.update(_read_one_cache(p))
    return out


# -- scripts ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Warp:
    map: str
    x: int
    y: int
    xs: int  # trigger span: cells either side
    ys: int
    to: str
    to_x: int
    to_y: int
    file: Path
    line: int


@dataclass(frozen=True)
class Shop:
    map: str
    x: int
    y: int
    name: str
    sprite: int
    items: tuple[tuple[str, int], ...]  # (item id or AegisName, price; -1: the db's Buy)
    file: Path
    line: int


@dataclass(frozen=True)
class Spawn:
    map: str
    mob: int | str  # a mob id, or its AegisName
    amount: int
    boss: bool
    file: Path
    line: int


@dataclass
class Scripts:
    warps: list[Warp] = field(default_factory=list)
    shops: list[Shop] = field(default_factory=list)
    spawns: list[Spawn] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # listed in a conf, not on disk


def _conf_entries(root: Path, conf: Path, seen: set[Path], out: list[tuple[Path, Path, int]]):
    if conf in seen:
        return
    seen.add(conf)
    for n, raw in enumerate(conf.read_text(errors="replace").splitlines(), 1):
        line = raw.split("//", 1)[0].strip()
        if ":" not in line:
            continue
        key, value = (s.strip() for s in line.split(":", 1))
        if key == "npc":
            out.append((root / value, conf, n))
        elif key == "import" and (root / value).is_file():
            _conf_entries(root, root / value, seen, out)


def script_files(root: Path, mode: str) -> tuple[list[Path], list[str]]:
    """The NPC files the server loads, in order, and those listed but not on disk."""
    confs = sorted((root / "npc").glob("scripts_*.conf"))
    confs += sorted((root / "npc" / mode).glob("scripts_*.conf"))
    entries: list[tuple[Path, Path, int]] = []
    seen: set[Path] = set()
    for conf in confs:
        _conf_entries(root, conf, seen, entries)
    files: list[Path] = []
    missing: list[str] = []
    for path, conf, n in entries:
        if path.is_file():
            if path not in files:
                files.append(path)
        else:
            missing.append(f"{conf.relative_to(root)}:{n}: {path.relative_to(root)}")
    # shops are listed in scripts_athena.conf, which a checkout trimmed to data may lack
    for extra in (root / "npc" / "merchants" / "shops.txt",
                  root / "npc" / mode / "merchants" / "shops.txt"):
        if extra.is_file() and extra not in files:
            files.append(extra)
    return files, missing


_HEAD = re.compile(r"^([^,\t]+),(-?\d+),(-?\d+)(?:,(-?\d+))?(?:,(-?\d+))?$")


def _ints(path: Path, n: int, text: str, what: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise _fail(path, n, f"{what}: expected integers, got {text!r}") from None


def read_scripts(root: Path, mode: str) -> Scripts:
    files, missing = script_files(root, mode)
    out = Scripts(files=files, missing=missing)
    for path in files:
        _read_script(path, out)
    return out


def _read_script(path: Path, out: Scripts) -> None:
    depth = 0  # brace depth of script bodies (skipped)
    in_comment = False
    for n, raw in enumerate(path.read_text(errors="replace").splitlines(), 1):
        line = raw
        if in_comment:
            if "*/" not in line:
                continue
            line = line.split("*/", 1)[1]
            in_comment = False
        while "/*" in line:
            head, rest = line.split("/*", 1)
            if "*/" in rest:
                line = head + rest.split("*/", 1)[1]
            else:
                line, in_comment = head, True
        line = line.split("//", 1)[0].rstrip()
        if depth > 0:
            depth += line.count("{") - line.count("}")
            continue
        if not line.strip():
            continue
        cols = line.split("\t")
        if len(cols) < 3:
            depth += line.count("{") - line.count("}")
            continue
        kind = cols[1].strip()
        if kind in ("warp", "warp2"):
            out.warps.append(_warp(path, n, cols))
        elif kind in SHOP_KINDS:
            shop = _shop(path, n, cols, kind)
            if shop is not None:
                out.shops.append(shop)
        elif kind in MONSTER_KINDS:
            out.spawns.append(_spawn(path, n, cols, kind))
        depth += line.count("{") - line.count("}")


def _warp(path: Path, n: int, cols: list[str]) -> Warp:
    m = _HEAD.match(cols[0].strip())
    if not m or len(cols) < 4:
        raise _fail(path, n, f"warp: expected 'map,x,y,dir<TAB>warp<TAB>name<TAB>"
                    f"xs,ys,to,x,y', got {cols[0]!r}")
    parts = cols[3].strip().split(",")
    if len(parts) != 5:
        raise _fail(path, n, f"warp: expected 'xs,ys,map,x,y', got {cols[3].strip()!r}")
    xs, ys = _ints(path, n, ",".join(parts[:2]), "warp span")
    tx, ty = _ints(path, n, ",".join(parts[3:]), "warp destination")
    return Warp(m.group(1), int(m.group(2)), int(m.group(3)), xs, ys, parts[2].strip(), tx, ty,
                path, n)


def _shop(path: Path, n: int, cols: list[str], kind: str) -> Shop | None:
    head = cols[0].strip()
    if head == "-":  # a floating shop (opened by a script): no place in the world
        return None
    m = _HEAD.match(head)
    if not m or len(cols) < 4:
        raise _fail(path, n, f"{kind}: expected 'map,x,y,dir<TAB>{kind}<TAB>name<TAB>"
                    f"sprite,item:price,...', got {head!r}")
    parts = [p.strip() for p in cols[3].split(",") if p.strip()]
    if not parts:
        raise _fail(path, n, f"{kind}: no sprite and no items")
    try:
        sprite = int(parts[0])
    except ValueError:
        sprite = -1  # a sprite by name (rAthena's constants): not used by Norn
    first = 1
    if kind in ("cashshop", "itemshop", "pointshop") and parts[0].isdigit() is False:
        first = 1
    items = []
    for p in parts[first:]:
        bits = p.split(":")
        if len(bits) < 2:
            if kind in ("itemshop", "pointshop") and p is parts[first]:
                continue  # the currency item or variable of itemshop/pointshop
            raise _fail(path, n, f"{kind}: item {p!r} is not 'id:price'")
        try:
            price = int(bits[1])
        except ValueError:
            raise _fail(path, n, f"{kind}: item {p!r}: price {bits[1]!r} is not an integer"
                        ) from None
        items.append((bits[0].strip(), price))
    if kind != "shop":  # paid in cash points or other items: not a zeny market
        return None
    return Shop(m.group(1), int(m.group(2)), int(m.group(3)), cols[2].strip(), sprite,
                tuple(items), path, n)


def _spawn(path: Path, n: int, cols: list[str], kind: str) -> Spawn:
    head = cols[0].strip().split(",")  # 'map' alone: anywhere on the map
    if len(head) not in (1, 3, 5) or len(cols) < 4:
        raise _fail(path, n, f"{kind}: expected 'map,x,y[,xs,ys]<TAB>{kind}<TAB>name<TAB>"
                    f"mob,amount[,...]', got {cols[0].strip()!r}")
    parts = cols[3].strip().split(",")
    if len(parts) < 2:
        raise _fail(path, n, f"{kind}: expected 'mob,amount', got {cols[3].strip()!r}")
    mob: int | str = parts[0].strip()
    if str(mob).lstrip("-").isdigit():
        mob = int(mob)
    try:
        amount = int(parts[1])
    except ValueError:
        raise _fail(path, n, f"{kind}: amount must be an integer, got "
                    f"{cols[3].strip()!r}") from None
    return Spawn(head[0].strip(), mob, amount, kind != "monster", path, n)


# -- YAML databases (line by line: the Body's entries, the keys Norn reads) ---------------
@dataclass(frozen=True)
class Item:
    id: int
    aegis: str
    name: str
    type: str
    buy: int | None
    sell: int | None
    file: Path
    line: int


@dataclass(frozen=True)
class Mob:
    id: int
    aegis: str
    name: str
    level: int
    mvp: bool


@dataclass(frozen=True)
class Quest:
    id: int
    title: str
    targets: tuple[tuple[str, int], ...]  # (mob AegisName, count)
    file: Path
    line: int


_ENTRY = re.compile(r"^  - (\w+):\s*(.*)$")
_KEY = re.compile(r"^    (\w+):\s*(.*)$")
_TARGET_MOB = re.compile(r"^      - Mob:\s*(.*)$")
_TARGET_COUNT = re.compile(r"^        Count:\s*(.*)$")


def _scalar(v: str) -> str:
    v = v.split(" #", 1)[0].strip()
    if len(v) >= 2 and v[0] == v[-1] and v[0] in "'\"":
        v = v[1:-1]
    return v


def _entries(path: Path):
    """(line, {key: (value, line)}, extra lines) per ``Body`` entry."""
    if not path.is_file():
        raise _fail(path, None, "database not found")
    body = False
    cur: dict[str, tuple[str, int]] | None = None
    start = 0
    extra: list[tuple[str, int]] = []
    for n, raw in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if raw.startswith("#") or not raw.strip():
            continue
        if not raw.startswith(" "):
            if cur is not None:
                yield start, cur, extra
                cur = None
            body = raw.rstrip() == "Body:"
            continue
        if not body:
            continue
        m = _ENTRY.match(raw)
        if m:
            if cur is not None:
                yield start, cur, extra
            cur, start, extra = {m.group(1): (_scalar(m.group(2)), n)}, n, []
            continue
        if cur is None:
            raise _fail(path, n, "expected a '  - Id: ...' entry under Body")
        m = _KEY.match(raw)
        if m:
            cur[m.group(1)] = (_scalar(m.group(2)), n)
        else:
            extra.append((raw, n))
    if cur is not None:
        yield start, cur, extra


def _int(path: Path, entry: dict[str, tuple[str, int]], key: str, start: int,
         default: int | None = None) -> int | None:
    if key not in entry:
        if default is None and key == "Id":
            raise _fail(path, start, "entry without an Id")
        return default
    value, n = entry[key]
    try:
        return int(value)
    except ValueError:
        raise _fail(path, n, f"{key}: {value!r} is not an integer") from None


def item_db_files(root: Path, mode: str) -> list[Path]:
    """``db/<mode>/item_db*.yml`` other than the importing ``item_db.yml``, then the
    operator's ``db/import/item_db.yml`` (later files replace earlier ids)."""
    files = [p for p in sorted((root / "db" / mode).glob("item_db*.yml"))
             if p.name != "item_db.yml"]
    imp = root / "db" / "import" / "item_db.yml"
    return files + ([imp] if imp.is_file() else [])


def read_items(root: Path, mode: str) -> dict[int, Item]:
    files = item_db_files(root, mode)
    if not files:
        raise _fail(root / "db" / mode / "item_db.yml", None, "no item database found")
    out: dict[int, Item] = {}
    for path in files:
        for start, e, _ in _entries(path):
            iid = _int(path, e, "Id", start)
            buy, sell = _int(path, e, "Buy", start), _int(path, e, "Sell", start)
            for key, v in (("Buy", buy), ("Sell", sell)):
                if v is not None and v < 0:
                    raise _fail(path, e[key][1], f"{key}: {v} is negative")
            out[iid] = Item(iid, e.get("AegisName", ("", 0))[0], e.get("Name", ("", 0))[0],
                            e.get("Type", ("Etc", 0))[0], buy, sell, path, start)
    return out


def read_mobs(root: Path, mode: str) -> dict[int, Mob]:
    files = [root / "db" / mode / "mob_db.yml"]
    imp = root / "db" / "import" / "mob_db.yml"
    files += [imp] if imp.is_file() else []
    out: dict[int, Mob] = {}
    for path in files:
        for start, e, _ in _entries(path):
            mid = _int(path, e, "Id", start)
            out[mid] = Mob(mid, e.get("AegisName", ("", 0))[0], e.get("Name", ("", 0))[0],
                           _int(path, e, "Level", start, 1), (_int(path, e, "MvpExp", start, 0)
                                                               or 0) > 0)
    return out


def read_quests(root: Path, mode: str) -> dict[int, Quest]:
    path = root / "db" / mode / "quest_db.yml"
    out: dict[int, Quest] = {}
    for start, e, extra in _entries(path):
        qid = _int(path, e, "Id", start)
        targets: list[tuple[str, int]] = []
        mob: str | None = None
        for raw, n in extra:
            m = _TARGET_MOB.match(raw)
            if m:
                mob = _scalar(m.group(1))
                targets.append((mob, 1))
                continue
            m = _TARGET_COUNT.match(raw)
            if m and targets:
                try:
                    targets[-1] = (targets[-1][0], int(_scalar(m.group(1))))
                except ValueError:
                    raise _fail(path, n, f"Count: {m.group(1)!r} is not an integer") from None
        out[qid] = Quest(qid, e.get("Title", ("", 0))[0], tuple(targets), path, start)
    return out
