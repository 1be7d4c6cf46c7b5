"""labtrack inside the training frameworks people already use; each module is an optional extra.

    labtrack.integrations.lightning     LabtrackLogger (PyTorch Lightning)         pip install 'labtrack[lightning]'
    labtrack.integrations.transformers  LabtrackCallback, report_to="labtrack"     pip install 'labtrack[transformers]'
    labtrack.integrations.keras         LabtrackCallback (Keras 3, any backend)    pip install 'labtrack[keras]'
    labtrack.integrations.sklearn       autolog() for estimators and searches      pip install 'labtrack[sklearn]'
    labtrack.integrations.xgboost       LabtrackCallback                           pip install 'labtrack[xgboost]'
    labtrack.integrations.lightgbm      labtrack_callback()                        pip install 'labtrack[lightgbm]'
    labtrack.integrations.optuna        trials as nested runs, finished configs skipped  'labtrack[optuna]'

Importing this package imports no framework; each module imports its own framework when it is imported.
Every integration follows the rules in ``labtrack.integrations.base``: attach to the active run or start
one (and end only what it started), tolerate re-logged hyperparameters, warn once instead of raising in
the middle of training, and log from rank zero only.
"""
