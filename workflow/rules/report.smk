# Stage 6: figures flagged for `snakemake --report`.


rule plot_tradeoff:
    input:
        summary=f"{RESULTS}/summary/summary.csv",
    output:
        report(
            f"{RESULTS}/plots/tradeoff.svg",
            caption="../report/tradeoff.rst",
            category="Trade-off",
        ),
    log:
        f"{RESULTS}/logs/plot_tradeoff.log",
    shell:
        "lowrank-amt plot-tradeoff --summary {input.summary:q} --out {output:q} > {log:q} 2>&1"
