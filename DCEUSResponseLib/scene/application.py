"""A Slicer scene set up headless (no Qt), as the application sets up ``slicer.mrmlScene``."""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from DCEUSResponseLib.scene.nodes import MODULE_LOGIC_CLASSES

if TYPE_CHECKING:  # for annotations only: ``slicer`` is imported inside functions

    pass


@dataclass
class HeadlessSlicer:
    """A Slicer scene with its application logic, module logics and IO manager, without Qt.

    ``cache_dir`` is the DataIOManager's cache (where ``WriteToMRB`` / ``ReadFromMRB`` pack and
    unpack bundles); it is deleted by :meth:`close` when this object created it. Use as a context
    manager or call :meth:`close`.
    """

    scene: Any
    app_logic: Any
    module_logics: dict[str, Any]
    remote_io: Any
    io_manager_logic: Any
    cache_dir: str
    owns_cache_dir: bool
    closed: bool = field(default=False)

    def module_logic(self, name: str) -> Any:
        """The logic of Slicer module ``name`` (``"Sequences"``, ``"Segmentations"``, ...)."""
        return self.module_logics[name]

    def close(self) -> None:
        """Detach the logics from the scene, clear it and remove the cache folder if it is ours."""
        if self.closed:
            return
        self.closed = True
        # Clearing the scene frees its data; the logics stay attached to the (now empty) scene and
        # go with it when the last reference is dropped. Detaching them one by one makes the
        # Segmentations logic warn about a missing subject hierarchy.
        self.scene.Clear(True)
        if self.owns_cache_dir:
            shutil.rmtree(self.cache_dir, ignore_errors=True)

    def __enter__(self) -> "HeadlessSlicer":
        return self

    def __exit__(self, kind, value, traceback) -> None:
        self.close()


def create_headless_application(cache_dir: str | None = None) -> HeadlessSlicer:
    """A scene set up as Slicer sets up ``slicer.mrmlScene``, for scripts and tests.

    Follows trame-slicer's ``SlicerApp`` and Slicer's own start-up: a ``vtkMRMLScene``, a
    ``vtkSlicerApplicationLogic`` with its colour logic and default colour tables, the module
    logics this package uses (their node classes are registered when they get the scene: a scene
    without them cannot read segmentations or sequence browsers from a file), and a
    ``vtkDataIOManagerLogic`` whose cache folder ``ReadFromMRB`` needs. ``cache_dir`` defaults to a
    new temporary folder, removed by :meth:`HeadlessSlicer.close`.
    """
    import slicer
    from vtkmodules.vtkCommonCore import vtkCollection

    owns_cache_dir = cache_dir is None
    cache_dir = tempfile.mkdtemp(prefix="dceus-slicer-cache-") if cache_dir is None else os.path.abspath(cache_dir)
    os.makedirs(cache_dir, exist_ok=True)

    scene = slicer.vtkMRMLScene()
    app_logic = slicer.vtkSlicerApplicationLogic()
    app_logic.SetMRMLScene(scene)
    color_logic = app_logic.GetColorLogic()
    color_logic.SetMRMLScene(scene)
    color_logic.AddDefaultColorNodes()
    # As the application: the slice orientation presets (a saved "Reformat" slice view needs them) and
    # the Colors module's colour legend node (vtkSlicerColorLogic registers it; fused scenes have legends).
    slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(scene)
    scene.RegisterNodeClass(slicer.vtkMRMLColorLegendDisplayNode())
    # No views: empty collections keep the application logic from looking for them.
    app_logic.SetSliceLogics(vtkCollection())
    app_logic.SetViewLogics(vtkCollection())

    # The application logic's colour logic serves as the Colors module (as in trame-slicer): Slicer's
    # vtkSlicerColorLogic would look for colour files in a Slicer installation.
    module_logics: dict[str, Any] = {"Colors": color_logic}
    app_logic.SetModuleLogic("Colors", color_logic)
    for module_name, class_name in MODULE_LOGIC_CLASSES:
        logic = getattr(slicer, class_name)()
        # Slicer gives a logic its application logic before its scene (qSlicerAbstractCoreModule).
        logic.SetMRMLApplicationLogic(app_logic)
        logic.SetMRMLScene(scene)
        app_logic.SetModuleLogic(module_name, logic)
        module_logics[module_name] = logic

    remote_io = slicer.vtkMRMLRemoteIOLogic()
    remote_io.SetMRMLScene(scene)
    remote_io.SetMRMLApplicationLogic(app_logic)
    remote_io.GetCacheManager().SetRemoteCacheDirectory(cache_dir)
    io_manager_logic = slicer.vtkDataIOManagerLogic()
    io_manager_logic.SetMRMLScene(scene)
    io_manager_logic.SetMRMLApplicationLogic(app_logic)
    io_manager_logic.SetAndObserveDataIOManager(remote_io.GetDataIOManager())
    remote_io.AddDataIOToScene()
    return HeadlessSlicer(scene, app_logic, module_logics, remote_io, io_manager_logic, cache_dir, owns_cache_dir)


def have_slicer_core() -> bool:
    """True when Slicer's MRML is importable (the ``slicer`` extra: the slicer-core wheel, or Slicer)."""
    try:
        import slicer
    except ImportError:
        return False
    return hasattr(slicer, "vtkMRMLScene")
