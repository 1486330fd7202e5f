"""Write the demo source datasets deterministically under one folder.

Real images come from installed packages (nibabel's brain EPI volume, pydicom's thoracic CT
slice, with threshold-derived labels); label types those lack are generated as phantoms with known ground truth: a CT
abdomen phantom with organs and a liver lesion (two cases stored in different
orientations), chest radiograph phantoms for single- and multi-label classification,
dermoscopy arrays in MedMNIST layout, blood-smear images with COCO boxes, and endoscopy
images with polyp masks. The same seed always writes the same pixels.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import nibabel as nib
import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.data import get_testdata_file
from scipy import ndimage

DEMO_VERSION = "4"
SEED = 7


def _png(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if arr.ndim == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    cv2.imwrite(str(path), arr)


def _ellipsoid(shape: tuple[int, int, int], center, radii) -> np.ndarray:
    zz, yy, xx = np.ogrid[: shape[0], : shape[1], : shape[2]]
    c, r = center, radii
    return ((zz - c[0]) / r[0]) ** 2 + ((yy - c[1]) / r[1]) ** 2 + ((xx - c[2]) / r[2]) ** 2 <= 1


def ct_phantom(rng: np.random.Generator, shape=(40, 64, 64)) -> tuple[np.ndarray, np.ndarray]:
    """(z, y, x) arrays in LPS index order: x grows to patient left, y to posterior, z up."""
    z, y, x = shape
    hu = np.full(shape, -1000, np.int16)
    lab = np.zeros(shape, np.uint8)
    body = _ellipsoid(shape, (z / 2, y / 2, x / 2), (z, y * 0.42, x * 0.46))
    hu[body] = -80  # fat
    jitter = rng.uniform(-2, 2, size=8)
    organs = [  # value, centre (z, y, x), radii, HU
        (1, (z * 0.55, y * 0.45, x * 0.32 + jitter[0]), (z * 0.3, y * 0.2, x * 0.16), 60),   # liver, patient right
        (2, (z * 0.6, y * 0.55, x * 0.72 + jitter[1]), (z * 0.15, y * 0.1, x * 0.07), 50),   # spleen, left
        (3, (z * 0.4, y * 0.62, x * 0.64 + jitter[2]), (z * 0.18, y * 0.07, x * 0.05), 35),  # kidney, left
        (4, (z * 0.38, y * 0.62, x * 0.36 + jitter[3]), (z * 0.18, y * 0.07, x * 0.05), 35),  # kidney, right
        (6, (z * 0.5, y * 0.7, x * 0.5), (z * 0.55, y * 0.06, x * 0.05), 700),               # vertebral column
    ]
    for value, c, r, h in organs:
        m = _ellipsoid(shape, c, r) & body
        hu[m], lab[m] = h, value
    n_lesions = int(rng.integers(1, 3))
    for _ in range(n_lesions):  # hypodense liver lesions
        c = (z * rng.uniform(0.5, 0.6), y * rng.uniform(0.4, 0.5), x * rng.uniform(0.28, 0.36))
        m = _ellipsoid(shape, c, (3, 4, 4)) & (lab == 1)
        hu[m], lab[m] = 15, 5
    hu = (hu + rng.normal(0, 12, shape)).astype(np.int16)
    return hu, lab


def _write_lps_nifti(path: Path, zyx: np.ndarray, spacing=(1.5, 1.5, 3.0), flip_x=False) -> None:
    """Write an LPS-index array as NIfTI; flip_x stores it mirrored (RPS) with a matching affine."""
    img = sitk.GetImageFromArray(zyx[:, :, ::-1] if flip_x else zyx)
    img.SetSpacing(spacing)
    if flip_x:
        img.SetDirection((-1, 0, 0, 0, 1, 0, 0, 0, 1))
        img.SetOrigin((spacing[0] * (zyx.shape[2] - 1), 0.0, 0.0))
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(img, str(path), useCompression=False)


def write_ct_phantoms(out: Path, rng: np.random.Generator, n: int = 3) -> None:
    for i in range(n):
        hu, lab = ct_phantom(rng)
        flip = i == 1  # one case stored mirrored to exercise reorientation
        _write_lps_nifti(out / "images" / f"case_{i:03d}.nii", hu, flip_x=flip)
        _write_lps_nifti(out / "labels" / f"case_{i:03d}.nii", lab, flip_x=flip)


def write_mr_brain(out: Path) -> None:
    """nibabel's real brain EPI volume (the first of example4d.nii.gz's two time points, 128 x 96 x 24 at
    2 mm: its axial planes pass the readability gates, anatomical.nii's 33 x 41 x 25 ones do not) and a
    brain mask derived by thresholding it: the volume is already brain-extracted, so the voxels above
    half its 99th percentile, opened, largest component, holes filled per plane, are the brain."""
    src = Path(nib.__file__).parent / "tests" / "data" / "example4d.nii.gz"  # nibabel.testing needs pytest
    img = nib.load(src)
    data = np.asarray(img.dataobj)[..., 0]
    mask = ndimage.binary_opening(data > 0.5 * np.percentile(data, 99), iterations=1)
    lab, n = ndimage.label(mask)
    if n:
        mask = lab == (np.argmax(np.bincount(lab.ravel())[1:]) + 1)
    mask = np.stack([ndimage.binary_fill_holes(mask[..., k]) for k in range(mask.shape[2])], axis=2)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    volume = nib.Nifti1Image(data, img.affine, img.header)
    volume.header.set_data_shape(data.shape)
    volume.header.set_zooms(img.header.get_zooms()[:3])
    nib.save(volume, out / "images" / "brain_epi.nii")
    nib.save(nib.Nifti1Image(mask.astype(np.uint8), img.affine), out / "labels" / "brain_epi.nii")


def write_ct_dicom(out: Path) -> None:
    """pydicom's real CT slice (an axial cut of the posterior thorax at a thoracic vertebra) as a one-slice
    series, with a label image on its grid (NRRD) derived by thresholds the slice itself supports:
    the lung fields (air density, HU < -400, components of at least 200 pixels with the vessels inside them
    filled in: this crop shows no air outside the body), named by side from the header's orientation (ImageOrientationPatient 1,0,0 / 0,1,0:
    columns run toward the patient's left, so the field left of the vertebra is the right lung), and the
    thoracic vertebra (the largest bone-density component, HU > 200, its marrow filled in). The small rib
    fragments stay unlabelled: not every structure on the slice is annotated."""
    src = Path(get_testdata_file("CT_small.dcm"))
    (out / "dicom").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, out / "dicom" / "CT_small.dcm")
    ds = pydicom.dcmread(src)
    hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert [round(float(v)) for v in ds.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0], "sides assume LPS columns"
    labels = np.zeros(hu.shape, np.uint8)
    bone, _ = ndimage.label(hu > 200)
    vertebra = ndimage.binary_fill_holes(bone == np.argmax(np.bincount(bone.ravel())[1:]) + 1)
    midline = np.nonzero(vertebra)[1].mean()
    air, n = ndimage.label(hu < -400)
    sizes = np.bincount(air.ravel())
    for k in range(1, n + 1):
        if sizes[k] >= 200:  # 1 right lung (patient's right = low columns), 2 left lung
            field = ndimage.binary_fill_holes(air == k)  # the vessels inside a lung field are lung too
            labels[field] = 1 if np.nonzero(field)[1].mean() < midline else 2
    labels[vertebra] = 3
    image = sitk.ReadImage(str(src))
    if image.GetDimension() == 2:
        image = sitk.JoinSeries(image)
    label = sitk.GetImageFromArray(labels[None])
    label.CopyInformation(image)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(label, str(out / "labels" / "structures.nrrd"), useCompression=False)


def chest_radiograph(rng: np.random.Generator, findings: set[str], size: int = 128) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size] / size
    img = 40 + 30 * np.exp(-((xx - 0.5) ** 2) / 0.08)  # mediastinum/soft tissue
    for cx in (0.3, 0.7):  # dark lung fields
        lung = ((xx - cx) / 0.16) ** 2 + ((yy - 0.48) / 0.3) ** 2 <= 1
        img[lung] -= 25
    heart_r = 0.2 if "cardiomegaly" in findings else 0.13
    img[((xx - 0.55) / heart_r) ** 2 + ((yy - 0.62) / 0.14) ** 2 <= 1] += 45
    if "pneumonia" in findings or "consolidation" in findings:
        cx, cy = rng.uniform(0.25, 0.75), rng.uniform(0.35, 0.6)
        img += 50 * np.exp(-(((xx - cx) ** 2 + (yy - cy) ** 2) / 0.006))
    if "pleural effusion" in findings:
        img[(yy > 0.68) & (np.abs(xx - 0.5) > 0.12)] += 35
    img += rng.normal(0, 4, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def write_cxr_folder(out: Path, rng: np.random.Generator, per_class: int = 8) -> None:
    for cls in ("normal", "pneumonia"):
        for i in range(per_class):
            _png(out / cls / f"{cls}_{i:02d}.png", chest_radiograph(rng, {cls}))


def write_cxr_multilabel(out: Path, rng: np.random.Generator, n: int = 12) -> None:
    findings = ["cardiomegaly", "pleural effusion", "consolidation"]
    rows = ["path,findings,patient"]
    for i in range(n):
        k = 1 + i % 2
        chosen = sorted(rng.choice(findings, size=k, replace=False).tolist())
        _png(out / "images" / f"cxr_{i:02d}.png", chest_radiograph(rng, set(chosen)))
        rows.append(f"cxr_{i:02d}.png,{';'.join(chosen)},P{i // 2:03d}")
    (out / "manifest.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")


def write_derm_npz(out: Path, rng: np.random.Generator, n: int = 16, size: int = 64) -> None:
    """MedMNIST+-like 64x64 RGB dermoscopy phantoms (the 28x28 originals are below the readability gate);
    0 nevus (round, even), 1 melanoma (irregular)."""
    imgs, labels = [], []
    yy, xx = np.mgrid[:size, :size]
    k = size / 32
    for i in range(n):
        y = i % 2
        base = np.stack([np.full((size, size), 210), np.full((size, size), 170), np.full((size, size), 150)],
                        -1).astype(float)
        r = k * (7 + rng.uniform(0, 3) + (rng.normal(0, 2.2, (size, size)) if y else 0))
        lesion = (xx - size / 2) ** 2 + (yy - size / 2) ** 2 <= r ** 2
        colour = np.array([90, 55, 40]) if not y else np.array([60, 35, 45]) + rng.uniform(-20, 20, 3)
        base[lesion] = colour
        imgs.append(np.clip(base + rng.normal(0, 5, base.shape), 0, 255).astype(np.uint8))
        labels.append([y])
    out.mkdir(parents=True, exist_ok=True)
    split = n * 3 // 4
    np.savez(out / "dermamnist_demo.npz", train_images=np.array(imgs[:split]), train_labels=np.array(labels[:split]),
             test_images=np.array(imgs[split:]), test_labels=np.array(labels[split:]))


def write_cells_coco(out: Path, rng: np.random.Generator, n: int = 8) -> None:
    """Blood-smear phantoms: pale red cells, larger purple white cells, tiny platelets."""
    cats = [{"id": 1, "name": "red blood cell"}, {"id": 2, "name": "white blood cell"}, {"id": 3, "name": "platelet"}]
    spec = {1: (9, (200, 120, 130), (6, 10)), 2: (18, (120, 60, 160), (1, 2)), 3: (3, (150, 90, 170), (1, 3))}
    images, anns = [], []
    for i in range(n):
        h, w = 160, 200
        img = np.full((h, w, 3), (235, 215, 215), np.uint8)
        for cat, (radius, colour, count) in spec.items():
            for _ in range(int(rng.integers(*count))):
                cx, cy = int(rng.integers(radius + 2, w - radius - 2)), int(rng.integers(radius + 2, h - radius - 2))
                cv2.circle(img, (cx, cy), radius, colour, -1)
                anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": cat, "iscrowd": 0,
                             "bbox": [cx - radius, cy - radius, 2 * radius + 1, 2 * radius + 1],
                             "area": float((2 * radius + 1) ** 2)})
        img = np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)
        _png(out / "images" / f"smear_{i:02d}.png", img)
        images.append({"id": i + 1, "file_name": f"smear_{i:02d}.png", "width": w, "height": h})
    doc = {"images": images, "annotations": anns, "categories": cats}
    (out / "annotations.json").write_text(json.dumps(doc, indent=1), encoding="utf-8")


def write_polyp_masks(out: Path, rng: np.random.Generator, n: int = 8) -> None:
    """Colonoscopy phantoms: reddish mucosa with one or two raised polyps and their masks."""
    h, w = 144, 176
    yy, xx = np.mgrid[:h, :w]
    for i in range(n):
        img = np.stack([np.full((h, w), 170.0), np.full((h, w), 80.0), np.full((h, w), 70.0)], -1)
        img *= (0.6 + 0.4 * np.exp(-(((xx - w / 2) ** 2 + (yy - h / 2) ** 2) / (2 * 70.0 ** 2))))[..., None]
        mask = np.zeros((h, w), np.uint8)
        for _ in range(1 + i % 2):
            cx, cy = rng.uniform(40, w - 40), rng.uniform(35, h - 35)
            rx, ry = rng.uniform(10, 22), rng.uniform(8, 18)
            blob = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1
            img[blob] = img[blob] * 0.75 + np.array([230, 140, 120]) * 0.25
            mask[blob] = 255
        img = np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)
        _png(out / "images" / f"colon_{i:02d}.png", img)
        _png(out / "masks" / f"colon_{i:02d}.png", mask)


def prepare_demo_sources(out: Path, force: bool = False) -> Path:
    """Write every demo dataset under ``out`` (skipped when the same demo version is there)."""
    out = Path(out)
    marker = out / ".demo_version"
    if marker.exists() and marker.read_text().strip() == DEMO_VERSION and not force:
        return out
    if out.exists():
        shutil.rmtree(out)
    rng = np.random.default_rng(SEED)
    write_ct_phantoms(out / "ct_abdomen_phantom", rng)
    write_mr_brain(out / "mr_brain_nibabel")
    write_ct_dicom(out / "ct_slice_pydicom")
    write_cxr_folder(out / "cxr_pneumonia_phantom", rng)
    write_cxr_multilabel(out / "cxr_findings_phantom", rng)
    write_derm_npz(out / "derm_npz_phantom", rng)
    write_cells_coco(out / "blood_smear_phantom", rng)
    write_polyp_masks(out / "polyp_phantom", rng)
    marker.write_text(DEMO_VERSION + "\n")
    return out
