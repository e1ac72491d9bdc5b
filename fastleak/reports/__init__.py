"""Run directories: image grids, loss curves and stable JSON reports."""
from fastleak.reports.figures import image_rows, loss_plot, reconstruction_grid
from fastleak.reports.rundir import REPORT_VERSION, fresh_run_path, new_run_dir, write_outcome

__all__ = ["reconstruction_grid", "image_rows", "loss_plot", "new_run_dir", "fresh_run_path", "write_outcome", "REPORT_VERSION"]
