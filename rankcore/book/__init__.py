"""The book's companion package: the runner, profiles, results, scorecard, paper values,
figures, widgets and one module per chapter.

It imports the library (:mod:`rankcore`) freely; the library never imports it.
``python -m rankcore.book run|build|list|check`` runs the book (:mod:`rankcore.book.runner`).
"""
