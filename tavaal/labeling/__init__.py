"""Practitioner mode: a human labels each query batch instead of a simulated oracle.

A batch folder holds to_label.csv and label_request.json (`tavaal.labeling.request`); the
human fills its labels file on a local web page (`tavaal.labeling.page`, `tavaal label`) or from
a contact sheet of the images (`tavaal.labeling.contact_sheet`).
"""

from tavaal.labeling.contact_sheet import write_contact_sheet
from tavaal.labeling.page import LabelingServer, serve_labeling
from tavaal.labeling.request import (
    LabelRequest,
    find_request,
    read_labels,
    read_request,
    write_labels,
)

__all__ = [
    "LabelRequest",
    "LabelingServer",
    "find_request",
    "read_labels",
    "read_request",
    "serve_labeling",
    "write_contact_sheet",
    "write_labels",
]
