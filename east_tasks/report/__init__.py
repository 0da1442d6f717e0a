"""Reports over the store: results read as DataFrames (`frames`), their summaries and paired differences
(`statistics`), rendered as Markdown (`markdown`) and plots (`plots`), a sweep's page and the cost table (`pages`);
experiment trackers (`tracking`), hand-offs (`export`) and the machine's checks (`doctor`)."""
