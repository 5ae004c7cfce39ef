"""Test helper: make a bad input out of a good DICOM file (the tests that read hostile or damaged files)."""
import pydicom


def rewrite_dicom(path, **attributes) -> None:
    """Rewrite ``path`` with some attributes changed (a value of None deletes the attribute)."""
    ds = pydicom.dcmread(path)
    for keyword, value in attributes.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    ds.save_as(path)
