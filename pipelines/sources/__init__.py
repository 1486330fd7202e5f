"""One reader per source format, chosen by the registry's ``format`` field."""

from pipelines.sources.base import Reader
from pipelines.sources.classification import (
    CsvManifestReader,
    ImageFolderReader,
    NpzReader,
)
from pipelines.sources.detection import CocoReader, VocReader, YoloReader
from pipelines.sources.dicom import DicomSegReader, DicomSeriesReader, RtStructReader
from pipelines.sources.mask_pairs import MaskPairsReader
from pipelines.sources.volumes import MsdReader, NnUnetReader, VolumePairsReader

READERS: dict[str, type[Reader]] = {
    r.format: r for r in (
        ImageFolderReader, CsvManifestReader, NpzReader, CocoReader, VocReader, YoloReader,
        MaskPairsReader, VolumePairsReader, MsdReader, NnUnetReader, DicomSeriesReader,
        DicomSegReader, RtStructReader,
    )
}

__all__ = ["READERS", "Reader"]
