"""The Streamlit app of `cxr-sr app`: page (streamlit_app), computing (processing), linked viewer
(viewer) and DICOM download (dicom_download)."""
