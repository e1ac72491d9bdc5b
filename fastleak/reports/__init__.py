"""Run directories: image grids, loss curves, stable JSON reports, and an experiment run into its folder."""
from fastleak.reports.figures import image_rows, loss_plot, reconstruction_grid
from fastleak.reports.outcomes import record_run, write_outcome
from fastleak.reports.rundir import REPORT_VERSION, fresh_run_path, new_run_dir

__all__ = ["reconstruction_grid", "image_rows", "loss_plot", "new_run_dir", "fresh_run_path", "write_outcome",
           "record_run", "REPORT_VERSION"]
