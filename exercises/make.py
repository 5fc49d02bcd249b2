"""Write the learner's copy of minidqn.py, or the learner's notebook: the exercises' code blanked, the rest as it is.

    python exercises/make.py [DIR]                 # DIR/minidqn.py (default: exercises/work/, which git ignores)
    python exercises/make.py DIR --exercise 3 9    # blank only these exercises
    python exercises/make.py --notebook [DIR]      # DIR/minidqn.ipynb: the same exercises as a Jupyter notebook
    python exercises/make.py --notebook --solved [DIR]   # the teacher's copy: the reference's code in every block

The copy is made from the current minidqn.py every time, so exercise and solution cannot drift apart. Each
blanked piece becomes a block between "### YOUR CODE HERE" and "### END OF YOUR CODE", with a hint and a
`raise NotImplementedError("exercise N: ...")`; signatures, docstrings and shape comments stay. The notebook holds
the same blocks, cut into cells in the tutorial's order, each exercise with its explanation and a check cell
(exercises/notebook_cells.py). An existing copy is not overwritten unless --force is given: it holds the
learner's work.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import course  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    course.add_arguments(parser, "blank")
    parser.add_argument("--notebook", action="store_true", help="write DIR/minidqn.ipynb, the exercises as a "
                        "Jupyter notebook, instead of DIR/minidqn.py")
    parser.add_argument("--solved", action="store_true", help="the reference's code in every block (the "
                        "teacher's copy)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing copy (its work is lost)")
    args = parser.parse_args(argv)
    if args.notebook and args.exercise:
        parser.error("--exercise blanks pieces of the .py copy; the notebook (--notebook) holds every exercise")
    path = os.path.join(args.dir, "minidqn.ipynb" if args.notebook else "minidqn.py")
    if os.path.exists(path) and not args.force:
        print(f"error: {path} exists and may hold your work; pass --force to overwrite it", file=sys.stderr)
        return 2
    with open(course.REFERENCE) as f:
        reference = f.read()
    try:
        if args.notebook:
            import notebook_cells

            text = notebook_cells.make_notebook(reference, solved=args.solved)
        else:
            text = course.make_copy(reference, args.exercise, solved=args.solved)
        os.makedirs(args.dir, exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    chosen = args.exercise or sorted(course.BY_NUMBER)
    solved = " (solved: the reference's code in every block)" if args.solved else ""
    print(f"wrote {path} with {len(chosen)} exercises{solved}:")
    for number in chosen:
        exercise = course.BY_NUMBER[number]
        print(f"  {number:>2}. {exercise.title}   ({exercise.part})")
    if args.notebook:
        print("open it in Jupyter, JupyterLab or VS Code from inside the repository; each exercise has its check cell")
    else:
        print(f"check it: python exercises/check.py {args.dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
