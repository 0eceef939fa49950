"""Reference values for src/study/stats.rs (the report's t-tests), from scipy.

Run with any Python that has scipy (the project venv has none):
    python3 -m venv /tmp/scipy && /tmp/scipy/bin/pip install scipy
    /tmp/scipy/bin/python scripts/golden/t_tests.py
and paste its output into the tests of src/study/stats.rs (they hold the numbers; no test runs Python).
"""
import scipy
from scipy import stats

print(f"# scipy {scipy.__version__}")
print("# 2 * stats.t.sf(|t|, df)")
for t, df in [(2.0, 3.0), (-8.5, 1.2), (0.1, 40.0)]:
    print(f"({t!r}, {df!r}, {float(2 * stats.t.sf(abs(t), df))!r}),")
print("# stats.ttest_ind(a, b, equal_var=False): t, df, p")
for a, b in [([95.31, 95.12, 95.48], [94.20, 94.65, 94.41]), ([0.531, 0.54], [0.601, 0.598]),
             ([1.0, 2.0, 3.0, 4.0, 5.0], [2.5, 3.1]), ([10.1, 10.2], [10.15, 10.18, 10.3]),
             ([0.912, 0.915, 0.909, 0.921], [0.913, 0.908])]:
    r = stats.ttest_ind(a, b, equal_var=False)
    print(f"(&{a!r}, &{b!r}, {float(r.statistic)!r}, {float(r.df)!r}, {float(r.pvalue)!r}),")
print("# stats.ttest_1samp(xs, threshold): t, df, p")
for xs, mu in [([95.2, 95.6, 95.4], 95.0), ([0.5, 0.52], 0.6), ([94.9, 95.3, 95.05, 94.8], 95.0)]:
    r = stats.ttest_1samp(xs, mu)
    print(f"(&{xs!r}, {mu!r}, {float(r.statistic)!r}, {float(r.df)!r}, {float(r.pvalue)!r}),")
