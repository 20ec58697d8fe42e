"""The HTML report: the page (`page`) and its figures (`figures`)."""
