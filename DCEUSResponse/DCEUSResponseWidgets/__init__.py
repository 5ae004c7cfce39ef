"""Sections of the DCEUSResponse module panel that live outside the module file (each a widget helper and the
thin logic it calls); installed with the module (CMakeLists.txt MODULE_PYTHON_SCRIPTS, as Slicer's DataProbe
installs DataProbeLib)."""
