"""Reference data shipped with gaitbench (published_results.csv: published and reproduced accuracies)."""
