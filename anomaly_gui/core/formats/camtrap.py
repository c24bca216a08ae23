"""Camera-trap datasets: COCO Camera Traps JSON, and camera-trap photo folders.

`coco_camtrap`: COCO Camera Traps JSON (detected by `location`/`seq_id`/`datetime` image fields);
read like COCO (see `coco.py`) with the item label = its species (`empty` when none) and the
location/sequence fields in `meta`. Write with `coco.write_coco(..., camtrap=True)`.

`camtrap` folder: species from, in order, a manifest's species column, the species sub-folder the
photo sits in (`deer/`, `Jaguar/`, `test/Cat/`), or the last word of the file name (`IMAG0031_wolf.JPG`,
also `testdataowl.JPG`) when it is a known species word. MegaDetector-style CSV manifests (columns `filename`/`file`/
`filepath`, `bbox_x bbox_y bbox_w bbox_h` normalised with top-left origin, `conf`, `category`
1 animal / 2 person / 3 vehicle, optional `species`) give box annotations with their confidence;
an animal box takes the image's species as label when it is known. Rows naming absent images are
reported once per manifest; malformed rows are reported with their line number. MegaDetector's batch
JSON (`images[].detections[]` with `category`, `conf`, `bbox`; `detection_categories`, and a
classifier's `classifications` + `classification_categories` for the species) is read the same way.
"""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

from anomaly_gui.core.errors import DataError
from anomaly_gui.core.formats.base import Annotation, DatasetItem, ImportResult, ProgressFn, register_format
from anomaly_gui.core.formats.coco import is_camtrap_json, json_files, read_coco
from anomaly_gui.core.formats.common import SPLIT_NAMES, box_annotation, clip_box, has_images, list_images, probe_size, subdirs, tick

SPECIES = frozenset("""
empty blank human person people vehicle car truck bicycle animal bird owl hawk eagle turkey crow raven
deer elk moose cougar puma lion mountainlion bobcat lynx jaguar ocelot leopard tiger cat coyote wolf fox dog
bear raccoon skunk opossum possum squirrel rabbit hare badger weasel marten fisher otter beaver porcupine
armadillo javelina peccary boar pig horse cow cattle sheep goat mouse rat rodent chipmunk ringtail coati
tapir agouti paca monkey baboon elephant zebra giraffe antelope impala gazelle wildebeest buffalo hyena
warthog kangaroo wallaby wombat
""".split())
MEGADETECTOR_CATEGORIES = {"1": "animal", "2": "person", "3": "vehicle"}
_WORD_RE = re.compile(r"[A-Za-z]+")
_FILE_COLS = ("filename", "file", "filepath", "image", "image_path", "file_name")
_BOX_COLS = ("bbox_x", "bbox_y", "bbox_w", "bbox_h")
_SPECIES_COLS = ("species", "label", "class", "common_name")


@register_format
class COCOCameraTrapsReader:
    name = "coco_camtrap"
    title = "COCO Camera Traps"
    priority = 72

    def detect(self, root: Path) -> bool:
        return any(is_camtrap_json(p) for p in json_files(root))

    def read(self, root: Path, progress: ProgressFn | None = None) -> ImportResult:
        return read_coco(Path(root), self.name, progress, camtrap=True)


def species_key(name: str) -> str:
    """The one spelling of a species name whichever reader produced it: case-folded, surrounding space
    removed, inner runs of spaces/underscores made one space (`Cat`, ` cat ` -> `cat`; `Red_Fox` -> `red fox`)."""
    return " ".join(re.split(r"[\s_]+", str(name).strip())).casefold().strip()


def species_from_name(path: Path) -> str:
    """The species word a camera-trap file name ends with, or ''."""
    words = _WORD_RE.findall(path.stem)
    if not words:
        return ""
    last = words[-1].lower()
    if last in SPECIES:
        return last
    for n in range(min(len(last), 12), 2, -1):  # 'testdataowl' -> 'owl'
        if last[-n:] in SPECIES:
            return last[-n:]
    return ""


def _folder_species(img: Path, species_dirs: set[Path]) -> str:
    """The species of the folder the photo sits in (`test/Cat/leopard_3.jpg` -> `cat`), or ''. A species
    folder is the user's own sorting, so it wins over a word in the file name: the folder reader reads the
    same folder the same way (issue 14: a species must not depend on which reader matched)."""
    parent = img.parent
    return species_key(parent.name) if parent.resolve() in species_dirs or species_key(parent.name) in SPECIES else ""


def _manifests(root: Path) -> list[Path]:
    if root.is_file():
        return [root] if _is_manifest(root) else []
    out = [p for pat in ("*.csv", "*.json") for p in sorted(root.glob(pat))]
    out += [p for d in subdirs(root) for pat in ("*.csv", "*.json") for p in sorted(d.glob(pat))]
    return [p for p in out if _is_manifest(p)]


def _is_manifest(path: Path) -> bool:
    if path.suffix.lower() == ".json":
        try:
            with open(path, "rb") as fh:
                head = fh.read(1 << 16).decode("utf-8", errors="replace")
        except OSError:
            return False
        return '"detection_categories"' in head or ('"images"' in head and '"detections"' in head)
    if path.suffix.lower() != ".csv":
        return False
    try:
        with open(path, newline="", encoding="utf-8", errors="replace") as fh:
            header = [h.strip().lower() for h in next(csv.reader(fh), [])]
    except OSError:
        return False
    return any(c in header for c in _FILE_COLS) and all(c in header for c in _BOX_COLS)


def _species_dirs(root: Path) -> list[Path]:
    dirs = [d for d in subdirs(root) if has_images(d)]
    named = [d for d in dirs if species_key(d.name) in SPECIES]
    return named if named and len(named) * 2 >= len(dirs) else []


@register_format
class CameraTrapFolderReader:
    name = "camtrap"
    title = "Camera-trap folder"
    priority = 60

    def detect(self, root: Path) -> bool:
        if not root.is_dir() and not (root.is_file() and root.suffix.lower() == ".csv"):
            return False
        if _manifests(root):
            return True
        if len(_species_dirs(root)) >= 2:
            return True
        folders = [root] + subdirs(root)
        imgs = [p for d in folders for p in list_images(d)[:200]]
        hits = sum(1 for p in imgs if species_from_name(p))
        return len(imgs) >= 2 and hits * 2 >= len(imgs)

    def read(self, root: Path, progress: ProgressFn | None = None) -> ImportResult:
        root = Path(root)
        base = root.parent if root.is_file() else root
        result = ImportResult(format=self.name, root=base)
        rows_by_image: dict[Path, list[dict[str, Any]]] = {}
        for man in _manifests(root):
            self._read_manifest(man, rows_by_image, result.problems)
        images = list_images(base, recursive=True)
        species_dirs = {d.resolve() for d in _species_dirs(base)}
        seen_labels: set[str] = set()
        for k, img in enumerate(images, 1):
            tick(progress, k, len(images), "reading camera-trap photos")
            rows = rows_by_image.get(img.resolve(), [])
            size = probe_size(img, result.problems)
            if size is None:
                continue
            species = next((species_key(r["species"]) for r in rows if r.get("species")), "") or _folder_species(img, species_dirs) \
                or species_from_name(img)
            anns = self._boxes(rows, species, size, img, result.problems)
            parts = img.relative_to(base).parts[:-1]
            split = next((SPLIT_NAMES[p.lower()] for p in parts if p.lower() in SPLIT_NAMES), "")
            meta: dict[str, Any] = {}
            if rows and rows[0].get("max_conf") is not None:
                meta["max_detection_conf"] = rows[0]["max_conf"]
            if species:
                seen_labels.add(species)
            result.items.append(DatasetItem(path=str(img), split=split, label=species, annotations=anns,
                                            width=size[0], height=size[1], meta=meta))
        result.classes = sorted(seen_labels | {a.label for it in result.items for a in it.annotations})
        return result

    @staticmethod
    def _read_manifest(man: Path, out: dict[Path, list[dict[str, Any]]], problems: list[DataError]) -> None:
        if man.suffix.lower() == ".json":
            _read_megadetector_json(man, out, problems)
            return
        missing: list[str] = []
        try:
            with open(man, newline="", encoding="utf-8") as fh:
                reader = csv.DictReader(fh)
                cols = {(h or "").strip().lower(): h for h in reader.fieldnames or []}
                fcol = next(cols[c] for c in _FILE_COLS if c in cols)
                scol = next((cols[c] for c in _SPECIES_COLS if c in cols), None)
                for line_no, row in enumerate(reader, 2):
                    name = (row.get(fcol) or "").strip()
                    if not name:
                        problems.append(DataError(man, f"line {line_no}: no file name; skipped"))
                        continue
                    img = _locate(man.parent, name, row)
                    if img is None:
                        missing.append(name)
                        continue
                    rec: dict[str, Any] = {"species": species_key(row.get(scol) or "") if scol else ""}
                    try:
                        vals = [row.get(cols[c], "") for c in _BOX_COLS]
                        rec["box"] = None if all(not (v or "").strip() for v in vals) else [float(v) for v in vals]
                        conf = row.get(cols["conf"]) if "conf" in cols else row.get(cols.get("confidence", ""), None)
                        rec["conf"] = float(conf) if conf not in (None, "") else None
                        mx = row.get(cols["max_detection_conf"]) if "max_detection_conf" in cols else None
                        rec["max_conf"] = float(mx) if mx not in (None, "") else None
                    except (TypeError, ValueError):
                        problems.append(DataError(man, f"line {line_no}: box or confidence is not a number; skipped"))
                        continue
                    rec["category"] = MEGADETECTOR_CATEGORIES.get((row.get(cols.get("category", ""), "") or "").strip(), "animal")
                    out.setdefault(img.resolve(), []).append(rec)
        except (OSError, UnicodeDecodeError, csv.Error, StopIteration) as exc:
            problems.append(DataError(man, f"malformed CSV manifest ({exc})"))
        if missing:
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            problems.append(DataError(man, f"{len(missing)} row(s) name images that are not present: {shown}"))

    @staticmethod
    def _boxes(rows: list[dict[str, Any]], species: str, size: tuple[int, int], img: Path, problems: list[DataError]) -> list[Annotation]:
        w, h = size
        anns: list[Annotation] = []
        for r in rows:
            if r.get("box") is None:
                continue
            x, y, bw, bh = r["box"]
            box, clipped = clip_box(x * w, y * h, (x + bw) * w, (y + bh) * h, w, h)
            if clipped:
                problems.append(DataError(img, "manifest box reaches outside the image, clipped"))
            if box[2] <= box[0] or box[3] <= box[1]:
                continue
            if r["category"] != "animal":
                label = r["category"]
            else:
                label = r.get("species") or (species if species and species != "empty" else "animal")
            anns.append(box_annotation(label, *box, score=r.get("conf")))
        return anns


def _read_megadetector_json(man: Path, out: dict[Path, list[dict[str, Any]]], problems: list[DataError]) -> None:
    """MegaDetector batch output: images[{file, detections[{category, conf, bbox}], classifications}]."""
    try:
        data = json.loads(man.read_text(encoding="utf-8"))
        images = data["images"]
        if not isinstance(images, list):
            raise TypeError("'images' is not a list")
    except (json.JSONDecodeError, UnicodeDecodeError, OSError, KeyError, TypeError) as exc:
        problems.append(DataError(man, f"malformed MegaDetector JSON ({exc})"))
        return
    det_cats = {str(k): str(v) for k, v in (data.get("detection_categories") or MEGADETECTOR_CATEGORIES).items()}
    cls_cats = {str(k): species_key(v) for k, v in (data.get("classification_categories") or {}).items()}
    missing: list[str] = []
    for n, im in enumerate(images):
        name = str(im.get("file") or "") if isinstance(im, dict) else ""
        img = _locate(man.parent, name, {}) if name else None
        if img is None:
            missing.append(name or f"#{n}")
            continue
        rows = out.setdefault(img.resolve(), [])
        if im.get("failure"):
            problems.append(DataError(img, f"MegaDetector could not process it ({im['failure']})"))
        for k, det in enumerate(im.get("detections") or []):
            try:
                box = [float(v) for v in det["bbox"]]
                conf = float(det.get("conf", det.get("confidence", 0.0)))
                if len(box) != 4:
                    raise ValueError("bbox needs 4 numbers")
            except (KeyError, TypeError, ValueError) as exc:
                problems.append(DataError(man, f"{name}: detection {k + 1} malformed ({exc}); skipped"))
                continue
            species = ""
            cls = det.get("classifications") or []
            if cls and isinstance(cls[0], (list, tuple)) and len(cls[0]) == 2:
                species = cls_cats.get(str(cls[0][0]), "")
            rows.append({"box": box, "conf": conf, "category": det_cats.get(str(det.get("category")), "animal"),
                         "species": species, "max_conf": im.get("max_detection_conf")})
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        problems.append(DataError(man, f"{len(missing)} image(s) listed but not present: {shown}"))


def _locate(folder: Path, name: str, row: dict[str, Any]) -> Path | None:
    for cand in (folder / name, folder / Path(name.replace("\\", "/")).name):
        if cand.is_file():
            return cand
    return None
