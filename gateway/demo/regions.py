"""Shaanxi's county-level divisions (GB/T 2260 codes as of 2023) and their rough populations.

Populations are approximate 2020-census figures in units of 10,000, used only as sampling
weights so Xi'an's districts get more residents than 佛坪县.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class City:
    code: str  # prefecture-level division code
    name: str  # 西安市
    short: str  # 西安: the form used in enterprise names


@dataclass(frozen=True, slots=True)
class District:
    code: str  # county-level division code, the first 6 digits of ID numbers
    name: str  # 雁塔区
    city: City
    population: int  # ~10,000 residents

    @property
    def urban(self) -> bool:
        """Districts and county-level cities get street addresses; counties mix in villages."""
        return not self.name.endswith("县")


_CITIES = {
    "6101": City("610100", "西安市", "西安"),
    "6102": City("610200", "铜川市", "铜川"),
    "6103": City("610300", "宝鸡市", "宝鸡"),
    "6104": City("610400", "咸阳市", "咸阳"),
    "6105": City("610500", "渭南市", "渭南"),
    "6106": City("610600", "延安市", "延安"),
    "6107": City("610700", "汉中市", "汉中"),
    "6108": City("610800", "榆林市", "榆林"),
    "6109": City("610900", "安康市", "安康"),
    "6110": City("611000", "商洛市", "商洛"),
}

# code name population(10k)
_TABLE = """
610102 新城区 60    610103 碑林区 76    610104 莲湖区 102   610111 灞桥区 76    610112 未央区 109
610113 雁塔区 145   610114 阎良区 28    610115 临潼区 71    610116 长安区 139   610117 高陵区 56
610118 鄠邑区 60    610122 蓝田县 51    610124 周至县 54
610202 王益区 18    610203 印台区 21    610204 耀州区 27    610222 宜君县 8
610302 渭滨区 46    610303 金台区 51    610304 陈仓区 54    610305 凤翔区 42    610323 岐山县 39
610324 扶风县 36    610326 眉县 29      610327 陇县 22      610328 千阳县 11    610329 麟游县 7
610330 凤县 10      610331 太白县 5
610402 秦都区 79    610403 杨陵区 25    610404 渭城区 66    610422 三原县 35    610423 泾阳县 49
610424 乾县 44      610425 礼泉县 39    610426 永寿县 15    610428 长武县 15    610429 旬邑县 22
610430 淳化县 15    610431 武功县 36    610481 兴平市 50    610482 彬州市 31
610502 临渭区 88    610503 华州区 29    610522 潼关县 14    610523 大荔县 59    610524 合阳县 37
610525 澄城县 33    610526 蒲城县 64    610527 白水县 25    610528 富平县 68    610581 韩城市 39
610582 华阴市 22
610602 宝塔区 58    610603 安塞区 18    610621 延长县 12    610622 延川县 15    610625 志丹县 13
610626 吴起县 15    610627 甘泉县 8     610628 富县 13      610629 洛川县 20    610630 宜川县 10
610631 黄龙县 5     610632 黄陵县 13    610681 子长市 24
610702 汉台区 62    610703 南郑区 46    610722 城固县 47    610723 洋县 39      610724 西乡县 36
610725 勉县 37      610726 宁强县 28    610727 略阳县 16    610728 镇巴县 22    610729 留坝县 3
610730 佛坪县 3
610802 榆阳区 71    610803 横山区 31    610822 府谷县 26    610824 靖边县 37    610825 定边县 32
610826 绥德县 29    610827 米脂县 16    610828 佳县 17      610829 吴堡县 6     610830 清涧县 14
610831 子洲县 21    610881 神木市 57
610902 汉滨区 87    610921 汉阴县 24    610922 石泉县 16    610923 宁陕县 6     610924 紫阳县 27
610925 岚皋县 14    610926 平利县 19    610927 镇坪县 5     610929 白河县 16    610981 旬阳市 39
611002 商州区 51    611021 洛南县 38    611022 丹凤县 25    611023 商南县 22    611024 山阳县 38
611025 镇安县 25    611026 柞水县 14
"""


def _parse() -> tuple[District, ...]:
    tokens = _TABLE.split()
    out = []
    for i in range(0, len(tokens), 3):
        code, name, population = tokens[i : i + 3]
        out.append(District(code, name, _CITIES[code[:4]], int(population)))
    return tuple(out)


DISTRICTS: tuple[District, ...] = _parse()
CITIES: tuple[City, ...] = tuple(_CITIES.values())
DISTRICT_BY_CODE: dict[str, District] = {d.code: d for d in DISTRICTS}
