"""Small dialogs and pages of the main window: about, keyboard shortcuts, the welcome page."""
from anomaly_gui.gui.dialogs.about import AboutDialog, ShortcutsDialog
from anomaly_gui.gui.dialogs.welcome import WelcomePage

__all__ = ["AboutDialog", "ShortcutsDialog", "WelcomePage"]
