"""Figure 7c's robust-minus-natural top-1 gap on the quick profile's cached models, with the
paired interval (Newcombe's, on the same images) beside the unpaired one, on all 10,000
CIFAR-10 test images at a few ranks. Needs the trained quick runs in the cache (it never
trains): ``RANKCORE_CACHE=... PYTHONPATH=. python bench/paired_gap.py``."""
import torch

torch.set_num_threads(1)
from rankcore import data, spectrum
from rankcore.book import runs
x, y = data.load("cifar10", split="test")[:2]
print("images", tuple(x.shape))
ranks = [1, 2, 3, 5, 8, 32]
out = {}
for name in ("natural", "adv", "adv_l2"):
    m = runs.cached(runs.preset(name, "quick"), progress=False, train_if_missing=False,
                    device="cpu")
    out[name] = spectrum.rank_spectrum(m, torch.utils.data.TensorDataset(x, y), ranks=ranks,
                                       per_image=True, progress=False, device="cpu")
for rob in ("adv", "adv_l2"):
    (tr, orr), (tn, on) = out[rob], out["natural"]
    g = spectrum.gap(tr, tn, "top1", correct=(orr["correct"], on["correct"]))
    print(f"{rob} - natural (5 epochs), top-1 points, 10,000 JPEG test images")
    for _, r in g.iterrows():
        print(f"  rank {int(r['rank']):2d}: {100 * r.gap:+5.1f}  paired [{100 * r.gap_lo:+5.1f}, "
              f"{100 * r.gap_hi:+5.1f}]  unpaired [{100 * r.gap_lo_unpaired:+5.1f}, "
              f"{100 * r.gap_hi_unpaired:+5.1f}]  widths {100 * (r.gap_hi - r.gap_lo):.1f} vs "
              f"{100 * (r.gap_hi_unpaired - r.gap_lo_unpaired):.1f}")
