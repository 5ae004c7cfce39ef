"""The MRML layer: clips, ROIs and results as 3D Slicer scene nodes, and Slicer scene bundles.

Qt-free: it needs only Slicer's MRML libraries (``import slicer``), which the real application
provides and which the ``slicer-core`` wheel provides without Qt (:func:`create_headless_application`
sets a scene up the way Slicer does). Every other function takes the scene (or a node) as argument,
so the Slicer module passes ``slicer.mrmlScene`` and the command line a headless scene.

Geometry (the clip's *frame geometry*, :mod:`DCEUSResponseLib.spatial.frame`): frame pixel (row r,
column c) is at LPS (c dx, r dy, 0) mm, i.e. RAS (-c dx, -r dy, 0), with (dy, dx) the clip's pixel
spacing (1 mm when the clip has no calibration). Each display panel (the contrast panel, and the
B-mode panel of a dual display) becomes a volume holding that panel's crop with IJK (i = column
within the panel, j = row within the panel, k = 0) and its origin at the panel's top-left pixel, so
the panels stand side by side as on the scanner's screen and a segment drawn on either volume maps
back to full-frame pixels exactly. This is also the orientation Slicer's own DICOM image-sequence
plugin gives ultrasound clips (IJK-to-RAS diag(-1, -1, 1)).

Node attributes written here (all strings; JSON where structured):

* sequences: ``DCEUS.Panel`` (``contrast`` / ``bmode``), ``DCEUS.Display``, ``DCEUS.Source``,
  ``DCEUS.FrameTimes`` (s, JSON), ``DCEUS.FrameSize`` ([rows, columns]), ``DCEUS.FrameSpacingMm``
  ([dy, dx] of the grid), ``DCEUS.Region`` (this panel), ``DCEUS.Regions`` (all of the clip's
  ultrasound regions), ``DCEUS.PixelSpacingMm``, ``DCEUS.Photometric``, ``DCEUS.BitsStored``,
  ``DCEUS.TimingSource``, ``DCEUS.Warnings``, ``DCEUS.Palette`` (PALETTE COLOR clips),
  ``DICOM.<keyword>`` for every entry of ``Clip.uids`` and ``DICOM.instanceUIDs`` (the attribute
  Slicer's DICOM plugins set) for the SOP Instance UID;
* every frame volume, hence the proxy volumes: ``DCEUS.Panel``, ``DCEUS.Display``, ``DCEUS.Source``
  and the ``DICOM.*`` attributes (Slicer copies a frame's attributes to the proxy showing it);
* result tables, plot series and chart: ``DCEUS.Source``, ``DCEUS.SoftwareName``,
  ``DCEUS.SoftwareVersion``, ``DCEUS.Reference``; the parameter table also ``DCEUS.Results``, the
  complete ``results.json`` text (full precision: Slicer saves table cells with 6 significant digits);
* parametric map volumes (:func:`add_parameter_maps`): ``DCEUS.Parameter`` (``PE``, ...,
  ``status``), ``DCEUS.Unit``, ``DCEUS.Model``, ``DCEUS.Binning``, ``DCEUS.ColourMap``; the status
  volume also ``DCEUS.StatusCodes`` (JSON, code -> name); in a scene bundle also the provenance
  attributes of the result tables.

Parametric maps are volumes on the map grid (the contrast panel, binned N x N) placed in the frame
geometry, so they overlay the contrast panel volume exactly: IJK (column, row, 0) of the map, spacing
N dx, N dy, first voxel at the full-frame position of the first map pixel's centre. Values are
float32 with NaN where the pixel was not fitted; the display node thresholds the finite range
(``ApplyThreshold``), which makes NaN voxels transparent in a foreground overlay (Slicer's threshold
filter counts NaN as outside any range; without it NaN would show as the lowest colour, opaque).
"""
