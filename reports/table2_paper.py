"""The paper's Table 2 (§3.2, A.3, A.4): its methods in its order, the batch sizes they train
with, the names it prints, and its printed figures for the three zoo models. ttplan's rows:
`reports.table2`."""

from ttplan.costmodel.specs import Budgets

METHODS = ("fulltrain", "lastlayer", "tinytl", "sparseupdate", "tinytrain")  # the paper's order
METHOD_LABELS = {"fulltrain": "FullTrain", "lastlayer": "LastLayer", "tinytl": "TinyTL",
                 "sparseupdate": "SparseUpdate", "tinytrain": "TinyTrain"}
MODEL_LABELS = {"mcunet-5fps": "MCUNet", "mbv2-w0.35": "MobileNetV2",
                "proxyless-w0.3": "ProxylessNASNet"}
BATCH_SIZES = {"fulltrain": 100, "tinytl": 100}  # §3.2; the others train with batch 1
MIB = 2**20
# The budgets the paper plans TinyTrain and SparseUpdate under (§3.2): 1 MB, 15 % of the
# full backward MACs.
PAPER_BUDGETS = Budgets("1MB", "15%")

# Table 2 of the paper as printed: (memory in MB, backward compute in millions of MACs).
PAPER_TABLE2 = {
    "mcunet-5fps": {"fulltrain": (906, 44.9), "lastlayer": (2.03, 1.57), "tinytl": (542, 26.4),
                    "sparseupdate": (1.43, 11.9), "tinytrain": (0.89, 6.51)},
    "mbv2-w0.35": {"fulltrain": (1049, 34.9), "lastlayer": (1.64, 0.80), "tinytl": (587, 16.4),
                   "sparseupdate": (2.08, 8.10), "tinytrain": (1.06, 4.90)},
    "proxyless-w0.3": {"fulltrain": (857, 38.4), "lastlayer": (1.06, 0.59),
                       "tinytl": (541, 17.8), "sparseupdate": (1.74, 7.60),
                       "tinytrain": (0.78, 5.00)},
}
